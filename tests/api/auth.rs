use serde_json::Value;

use crate::helpers::{read_answer, spawn_app};

/// Every operation in the OpenAPI document, as (method, path with a sample id).
async fn every_operation(app: &crate::helpers::TestApp) -> Vec<(String, String)> {
    let document: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json_value().await;
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let concrete = path
                .split('/')
                .map(|part| if part.starts_with('{') { "0196f3a4-1111-7000-8000-000000000001" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            operations.push((method.to_uppercase(), concrete));
        }
    }
    operations
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn every_operation_but_the_probes_requires_the_admin_token() {
    let app = spawn_app().await;
    let operations = every_operation(&app).await;
    assert!(operations.len() >= 9, "{operations:?}");
    for (method, path) in operations {
        for token in [None, Some("wrong-token-wrong-token")] {
            let mut request = app.http.request(method.parse().unwrap(), app.url(&path)).body("{}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = read_answer(request.send().await.unwrap()).await;
            if path == "/health" || path == "/livez" {
                assert_eq!(answer.status, 200, "{method} {path}");
                continue;
            }
            assert_eq!(answer.status, 401, "{method} {path} with {token:?}: {:?}", answer.body);
            assert_eq!(answer.body["error"], "unauthorized", "{method} {path}");
            assert!(answer.body["message"].is_string());
        }
    }
}

#[tokio::test]
async fn the_explorer_and_document_need_no_token() {
    let app = spawn_app().await;
    for path in ["/docs", "/openapi.json", "/health", "/livez"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}
