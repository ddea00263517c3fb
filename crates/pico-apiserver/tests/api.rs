//! Black-box tests of every REST endpoint and error path against the real server binary.

mod common;

use common::{Server, token};
use serde_json::{Value, json};

fn assert_session_shape(session: &Value) {
    let id = session["sessionId"].as_str().expect("sessionId");
    assert!(uuid::Uuid::parse_str(id).is_ok());
    for field in ["createdAt", "expiresAt", "lastActivityAt"] {
        let ts = session[field].as_str().expect(field);
        assert!(ts.ends_with('Z') && ts.len() == 27, "{field} = {ts}");
    }
    assert!(session["metadata"].is_object());
    assert_eq!(session["ssh"]["username"], "sandbox");
    assert_eq!(
        session["ssh"]["tunnelPath"],
        format!("/v1/sessions/{id}/tunnel")
    );
    assert!(
        session["ssh"]["hostKeys"][0]
            .as_str()
            .expect("host key")
            .starts_with("ssh-ed25519 AAAA")
    );
}

#[test]
fn health_readyz_metrics_and_openapi() {
    let server = Server::start(&[]);
    let res = server.request("GET", "/health").send();
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({"status": "healthy"}));
    assert_eq!(server.request("GET", "/readyz").send().status, 200);
    let metrics = server.request("GET", "/metrics").send();
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("pico_sessions_created_total 0"));
    let doc = server.request("GET", "/openapi.json").send().json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/sessions/{id}"]["patch"].is_object());
}

#[test]
fn session_lifecycle() {
    let server = Server::start(&[]);
    // Empty body, no content type: all defaults, and a server-made key returned once.
    let created = server.request("POST", "/v1/sessions").body(b"").send();
    assert_eq!(created.status, 200, "{}", created.text());
    let session = created.json();
    assert_session_shape(&session);
    assert_eq!(session["status"], "running");
    assert_eq!(session["ttl"], 3600);
    assert_eq!(session["idleTimeout"], 0);
    assert!(
        session["sshPrivateKey"]
            .as_str()
            .expect("private key")
            .contains("OPENSSH PRIVATE KEY")
    );
    let id = session["sessionId"].as_str().expect("id").to_owned();

    // get never returns the private key again
    let got = server.request("GET", &format!("/v1/sessions/{id}")).send();
    assert_eq!(got.status, 200);
    let got = got.json();
    assert!(got.get("sshPrivateKey").is_none());
    assert_eq!(got["createdAt"], session["createdAt"]);

    // a caller-supplied key and metadata
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";
    // The local runtime pulls an image it is given (tests/image_sessions.rs, against a test
    // registry); the emulated cluster records it.
    let image = common::kubernetes_mode().then_some("ubuntu:24.04");
    let body = json!({"ttl": 120, "image": image, "sshPublicKey": key,
        "metadata": {"team": "a", "n": 1}, "idleTimeout": 600});
    let second = server.create(None, &body.to_string());
    assert!(second.get("sshPrivateKey").is_none());
    assert_eq!(second["metadata"], json!({"team": "a", "n": 1}));
    assert_eq!(second["image"], json!(image));
    assert_eq!(second["ttl"], 120);
    assert_eq!(second["idleTimeout"], 600);
    let second_id = second["sessionId"].as_str().expect("id").to_owned();

    // list: oldest first, with paging
    let list = server.request("GET", "/v1/sessions").send().json();
    assert_eq!(list["total"], 2);
    assert_eq!(list["limit"], 50);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["sessions"][0]["sessionId"], id.as_str());
    assert_eq!(list["sessions"][1]["sessionId"], second_id.as_str());
    let page = server
        .request("GET", "/v1/sessions?limit=1&offset=1")
        .send()
        .json();
    assert_eq!(page["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["sessions"][0]["sessionId"], second_id.as_str());
    assert_eq!(
        (page["total"].clone(), page["limit"].clone()),
        (json!(2), json!(1))
    );
    let past = server.request("GET", "/v1/sessions?offset=5").send().json();
    assert_eq!(past["sessions"], json!([]));

    // extend
    let extended = server
        .request("PATCH", &format!("/v1/sessions/{second_id}"))
        .json(r#"{"ttl": 7200}"#)
        .send();
    assert_eq!(extended.status, 200, "{}", extended.text());
    let extended = extended.json();
    assert_eq!(extended["ttl"], 7200);
    let expires = time::OffsetDateTime::parse(
        extended["expiresAt"].as_str().expect("expiresAt"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("parse");
    let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((7100..=7200).contains(&left), "expires in {left}s");

    // delete, then it is gone everywhere
    for sid in [&id, &second_id] {
        let deleted = server
            .request("DELETE", &format!("/v1/sessions/{sid}"))
            .send();
        assert_eq!(deleted.status, 200);
        assert_eq!(
            deleted.json(),
            json!({"message": "Session deleted successfully"})
        );
        assert!(!server.state_dir.join("sessions").join(sid).exists());
    }
    server
        .request("GET", &format!("/v1/sessions/{id}"))
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    server
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    let metrics = server.request("GET", "/metrics").send().text();
    assert!(
        metrics.contains("pico_sessions_created_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pico_sessions_deleted_total 2"),
        "{metrics}"
    );
}

#[test]
fn bad_requests_get_the_error_body() {
    let server = Server::start(&["--max-ttl", "7200"]);
    let post = |body: &str| server.request("POST", "/v1/sessions").json(body).send();
    post(r#"{"ttl": 59}"#).assert_error(400, "INVALID_TTL");
    post(r#"{"ttl": 7201}"#).assert_error(400, "INVALID_TTL");
    post(r#"{"sshPublicKey": "ssh-ed25519 bm90IGEga2V5"}"#).assert_error(400, "INVALID_SSH_KEY");
    post(r#"{"sshPublicKey": "hello"}"#).assert_error(400, "INVALID_SSH_KEY");
    post("{").assert_error(400, "INVALID_REQUEST");
    post(r#"{"ttl": "soon"}"#).assert_error(400, "INVALID_REQUEST");
    post(r#"{"metadata": [1, 2]}"#).assert_error(400, "INVALID_REQUEST");
    post(r#"{"idleTimeout": -1}"#).assert_error(400, "INVALID_REQUEST");
    post(r#"{"image": "has space"}"#).assert_error(400, "INVALID_REQUEST");
    post("[]").assert_error(400, "INVALID_REQUEST");
    server
        .request("POST", "/v1/sessions")
        .header("Content-Type", "text/plain")
        .body(b"ttl=60")
        .send()
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = format!(r#"{{"metadata": {{"x": "{}"}}}}"#, "a".repeat(1024 * 1024));
    post(&big).assert_error(413, "PAYLOAD_TOO_LARGE");

    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1", "limit="] {
        server
            .request("GET", &format!("/v1/sessions?{query}"))
            .send()
            .assert_error(400, "INVALID_LIMIT");
    }
    server
        .request("GET", "/v1/sessions?offset=-3")
        .send()
        .assert_error(400, "INVALID_REQUEST");
    assert_eq!(
        server
            .request("GET", "/v1/sessions?limit=100")
            .send()
            .status,
        200
    );

    let missing = uuid::Uuid::new_v4();
    for method in ["GET", "DELETE"] {
        server
            .request(method, &format!("/v1/sessions/{missing}"))
            .send()
            .assert_error(404, "SESSION_NOT_FOUND");
    }
    server
        .request("PATCH", &format!("/v1/sessions/{missing}"))
        .json(r#"{"ttl": 100}"#)
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    server
        .request("GET", "/v1/sessions/not-a-uuid")
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");

    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let patch = |body: &str| {
        server
            .request("PATCH", &format!("/v1/sessions/{id}"))
            .json(body)
            .send()
    };
    patch(r#"{"ttl": 10}"#).assert_error(400, "INVALID_TTL");
    patch(r#"{"ttl": 99999}"#).assert_error(400, "INVALID_TTL");
    patch("").assert_error(400, "INVALID_REQUEST");
    patch(r#"{"nottl": 1}"#).assert_error(400, "INVALID_REQUEST");

    server
        .request("GET", "/nope")
        .send()
        .assert_error(404, "NOT_FOUND");
    server
        .request("PUT", "/v1/sessions")
        .json("{}")
        .send()
        .assert_error(405, "METHOD_NOT_ALLOWED");
    server
        .request("POST", &format!("/v1/sessions/{id}"))
        .send()
        .assert_error(405, "METHOD_NOT_ALLOWED");
    // a request id given by the client comes back in the body and header
    let res = server
        .request("GET", "/v1/sessions/x")
        .header("X-Request-Id", "trace-123")
        .send();
    assert_eq!(
        res.assert_error(404, "SESSION_NOT_FOUND")["requestId"],
        "trace-123"
    );
    assert_eq!(res.header("x-request-id").as_deref(), Some("trace-123"));
    // the server is still fine after all of that
    assert_eq!(server.request("GET", "/health").send().status, 200);
}

#[test]
fn auth_ownership_and_quota() {
    let server = Server::start(&[
        "--jwt-secret",
        common::SECRET,
        "--max-sessions-per-user",
        "1",
    ]);
    let res = server.request("GET", "/v1/sessions").send();
    res.assert_error(401, "UNAUTHORIZED");
    assert!(
        res.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    server
        .request("GET", "/v1/sessions")
        .bearer("not.a.token")
        .send()
        .assert_error(401, "UNAUTHORIZED");
    server
        .request("POST", "/v1/sessions")
        .header("Authorization", "Basic Zm9vOmJhcg==x")
        .send()
        .assert_error(401, "UNAUTHORIZED");
    // health needs no token
    assert_eq!(server.request("GET", "/health").send().status, 200);

    let (alice, bob) = (token("alice"), token("bob"));
    let session = server.create(Some(&alice), "");
    let id = session["sessionId"].as_str().expect("id");
    server
        .request("POST", "/v1/sessions")
        .bearer(&alice)
        .send()
        .assert_error(429, "QUOTA_EXCEEDED");

    // Bob sees nothing of Alice's session: it answers exactly like a missing one.
    let path = format!("/v1/sessions/{id}");
    server
        .request("GET", &path)
        .bearer(&bob)
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    server
        .request("PATCH", &path)
        .bearer(&bob)
        .json(r#"{"ttl": 600}"#)
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    server
        .request("DELETE", &path)
        .bearer(&bob)
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
    let bobs = server
        .request("GET", "/v1/sessions")
        .bearer(&bob)
        .send()
        .json();
    assert_eq!(bobs["total"], 0);
    let admin = common::token_with(json!({"sub": "root", "scope": "openid sessions:admin"}));
    let all = server
        .request("GET", "/v1/sessions")
        .bearer(&admin)
        .send()
        .json();
    assert_eq!(all["total"], 1);
    assert_eq!(
        server.request("GET", &path).bearer(&alice).send().status,
        200
    );
    assert_eq!(
        server.request("DELETE", &path).bearer(&admin).send().status,
        200
    );
}

#[test]
fn sandbox_that_cannot_start() {
    let server = Server::start(&["--agent-binary", "/bin/false"]);
    let res = server.request("POST", "/v1/sessions").send();
    res.assert_error(500, "SANDBOX_CREATE_FAILED");
    assert_eq!(
        server.request("GET", "/v1/sessions").send().json()["total"],
        0
    );
    let leftovers = std::fs::read_dir(server.state_dir.join("sessions"))
        .expect("sessions dir")
        .count();
    assert_eq!(leftovers, 0, "a failed create left files behind");
}

#[test]
fn sandbox_that_never_gets_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("slow-agent");
    common::write_mode(&slow, "#!/bin/sh\nexec sleep 30\n", 0o755);
    let slow = slow.display().to_string();
    let server = Server::start(&["--agent-binary", &slow, "--create-timeout", "1"]);
    server
        .request("POST", "/v1/sessions")
        .send()
        .assert_error(504, "SANDBOX_TIMEOUT");
    assert_eq!(
        server.request("GET", "/v1/sessions").send().json()["total"],
        0
    );
}
