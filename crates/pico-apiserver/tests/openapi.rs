//! `api-spec/sandbox-api-spec.yaml` must equal what the server serves at `/openapi.json`.

mod common;

use common::Server;

#[test]
fn committed_spec_equals_served_document() {
    let server = Server::start(&[]);
    let served = server.request("GET", "/openapi.json").send().json();
    let path = common::repo_root().join("api-spec/sandbox-api-spec.yaml");
    let text = std::fs::read_to_string(&path).expect("read api-spec/sandbox-api-spec.yaml");
    let committed: serde_json::Value = serde_norway::from_str(&text).expect("parse YAML");
    assert!(
        served == committed,
        "{} is stale: regenerate it with `make spec`",
        path.display()
    );
}
