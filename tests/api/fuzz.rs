//! A property test over the whole HTTP API: random and malformed paths, ids, query strings,
//! headers and bodies for every operation in the OpenAPI document. The property: never a
//! 5xx, and every 4xx carries the standard error body. Deterministic (seeded) so a failure
//! can be replayed; `FUZZ_CASES` and `FUZZ_SEED` change the run.

use serde_json::{json, Value};

use crate::helpers::{read_answer, spawn_app, ADMIN_TOKEN};

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NASTY_STRINGS: &[&str] = &[
    "", " ", "null", "0", "-1", "99999999999999999999", "1e308", "NaN", "true", "🦀", "\u{0}",
    "../../etc/passwd", "%00", "%ZZ", "'; DROP TABLE deliveries; --", "<script>", "order.*", "a.b",
    "0196f3a4-1111-7000-8000-000000000001", "00000000-0000-0000-0000-000000000000", "whsec_", "http://127.0.0.1:9/x",
    "https://example.com/hook", "ftp://x", "http://[::1", "\\", "\"", "{", "[]",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.pick(NASTY_STRINGS).to_string(),
        1 => "x".repeat(rng.below(5000)),
        2 => (0..rng.below(40)).map(|_| char::from_u32(rng.below(0x2FFF) as u32).unwrap_or('?')).collect(),
        _ => format!("{}", rng.next()),
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64),
        3 => json!((rng.next() as f64) / 7.0),
        4 => json!(random_string(rng)),
        5 => Value::Array((0..rng.below(5)).map(|_| random_json(rng, depth + 1)).collect()),
        _ => {
            let keys = ["target_url", "secret_key", "event_types", "name", "is_active", "event_type", "payload", "junk"];
            Value::Object((0..rng.below(6)).map(|_| (rng.pick(&keys).to_string(), random_json(rng, depth + 1))).collect())
        }
    }
}

/// A body roughly in the shape an operation expects, with random values, or raw noise.
fn random_body(rng: &mut Rng, valid_target: &str) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        2 => format!("{{\"target_url\": \"{valid_target}\", \"event_types\": {}}}", random_json(rng, 2)).into_bytes(),
        3 => format!("{{\"event_type\": {}, \"payload\": {}}}", random_json(rng, 2), random_json(rng, 1)).into_bytes(),
        4 => serde_json::to_vec(&random_json(rng, 0)).unwrap(),
        _ => b"{\"a\":".repeat(rng.below(2000)),
    }
}

#[tokio::test]
async fn random_and_malformed_requests_never_get_a_5xx() {
    let cases: usize = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_1234);
    let app = spawn_app().await;
    let target = "http://127.0.0.1:9/fuzz";
    let subscription = app.create_subscription(target, json!({"secret_key": "fuzz-secret-123"})).await.to_string();
    let delivery = app.ingest(subscription.parse().unwrap(), "{}").await.to_string();

    let document: Value = serde_json::from_slice(&app.http.get(app.url("/openapi.json")).send().await.unwrap().bytes().await.unwrap()).unwrap();
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let query: Vec<String> = operation["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "query").map(|p| p["name"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            operations.push((method.to_uppercase(), path.clone(), query));
        }
    }

    let mut rng = Rng(seed);
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    for case in 0..cases {
        let (method, template, query_names) = rng.pick(&operations).clone();
        let method = if rng.chance(10) { rng.pick(&methods).to_string() } else { method };
        let path: String = template
            .split('/')
            .map(|part| {
                if !part.starts_with('{') {
                    return part.to_owned();
                }
                match rng.below(4) {
                    0 => subscription.clone(),
                    1 => delivery.clone(),
                    2 => uuid::Uuid::now_v7().to_string(),
                    _ => urlencode(&random_string(&mut rng)),
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut query = Vec::new();
        for name in query_names.iter().chain(["junk".to_owned()].iter()) {
            if rng.chance(50) {
                query.push(format!("{}={}", name, urlencode(&random_string(&mut rng))));
            }
        }
        let url = format!("{}{}?{}", app.address, path, query.join("&"));
        let mut request = app.http.request(method.parse().unwrap(), &url);
        request = match rng.below(5) {
            0 => request,
            1 => match reqwest::header::HeaderValue::from_str(&random_string(&mut rng)) {
                Ok(value) => request.header("authorization", value),
                Err(_) => request,
            },
            _ => request.bearer_auth(ADMIN_TOKEN),
        };
        for header in ["content-type", "x-webhook-event", "idempotency-key", "x-hub-signature-256", "content-encoding"] {
            if rng.chance(25)
                && let Ok(value) = reqwest::header::HeaderValue::from_str(&random_string(&mut rng))
            {
                request = request.header(header, value);
            }
        }
        let body = random_body(&mut rng, target);
        let answer = read_answer(request.body(body.clone()).send().await.unwrap()).await;
        let replay = format!("case {case} (FUZZ_SEED={seed}): {method} {url} body {:?}", String::from_utf8_lossy(&body[..body.len().min(200)]));
        assert!(answer.status < 500, "{replay} → {} {:?}", answer.status, answer.body);
        if answer.status >= 400 {
            assert!(answer.body["error"].is_string() && answer.body["message"].is_string(), "{replay} → {} {:?}", answer.status, answer.body);
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
