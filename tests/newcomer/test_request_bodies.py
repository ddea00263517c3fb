"""Issue 17.6: a misspelled field is refused, naming it; the schema says so; an empty
`sshPublicKey` is refused by both the schema and the server."""
import requests
import yaml

from pico_server import REPO


def test_unknown_field_in_create_is_400_naming_it(server):
    answer = requests.post(f"http://{server.addr}/v1/sessions", json={"tll": 600}, timeout=60)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "INVALID_REQUEST"
    assert "`tll`" in body["message"], body["message"]
    assert body["details"] == {"field": "tll"}


def test_unknown_field_in_extend_is_400_naming_it(server):
    created = requests.post(f"http://{server.addr}/v1/sessions", json={"ttl": 600}, timeout=60)
    assert created.status_code == 200, created.text
    sid = created.json()["sessionId"]
    try:
        answer = requests.patch(f"http://{server.addr}/v1/sessions/{sid}", json={"ttl": 900, "tl": 1}, timeout=30)
        assert answer.status_code == 400 and "`tl`" in answer.json()["message"], answer.text
    finally:
        requests.delete(f"http://{server.addr}/v1/sessions/{sid}", timeout=60)


def test_empty_ssh_public_key_refused_by_schema_and_server(server):
    answer = requests.post(f"http://{server.addr}/v1/sessions", json={"sshPublicKey": ""}, timeout=60)
    assert answer.status_code == 400, answer.text
    spec = requests.get(f"http://{server.addr}/openapi.json", timeout=30).json()
    create = spec["components"]["schemas"]["CreateSessionRequest"]
    assert create["properties"]["sshPublicKey"]["minLength"] == 1


def test_request_schemas_forbid_additional_properties():
    spec = yaml.safe_load((REPO / "api-spec" / "sandbox-api-spec.yaml").read_text())
    schemas = spec["components"]["schemas"]
    for name in ("CreateSessionRequest", "ExtendSessionRequest"):
        assert schemas[name].get("additionalProperties") is False, name
