use crate::helpers::spawn_app;

/// The served OpenAPI document must match the committed snapshot, so any API change shows
/// up as a diff in review. Run with `UPDATE_SNAPSHOTS=1` to accept a deliberate change.
#[tokio::test]
async fn the_openapi_document_matches_the_snapshot() {
    let app = spawn_app().await;
    let served = app.http.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("snapshot exists; run with UPDATE_SNAPSHOTS=1 once");
    assert!(committed == pretty, "the OpenAPI document changed; review and run with UPDATE_SNAPSHOTS=1");
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_security() {
    let app = spawn_app().await;
    let document: serde_json::Value =
        serde_json::from_str(&app.http.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap()).unwrap();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            if path != "/health" && path != "/livez" {
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
                assert!(operation["security"].is_array(), "{method} {path} documents its auth");
            }
            // The liveness probe never reads the database, so it never answers 503.
            if path != "/livez" {
                assert!(responses.contains_key("503"), "{method} {path} documents 503");
            }
            assert!(operation["summary"].is_string(), "{method} {path} has a summary");
        }
    }
}
