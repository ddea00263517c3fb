//! Unit tests of the object store.
use super::*;
use crate::resources::{PODS, SANDBOXES};

#[test]
fn create_conflict_and_gc() {
    let s = Store::new(100);
    let sb = s
        .create(
            &SANDBOXES,
            "default",
            json!({"metadata": {"name": "a"}}),
            false,
        )
        .expect("create");
    let err = s
        .create(
            &SANDBOXES,
            "default",
            json!({"metadata": {"name": "a"}}),
            false,
        )
        .expect_err("dup");
    assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
    let uid = sb["metadata"]["uid"].as_str().expect("uid");
    let pod = json!({"metadata": {"name": "a", "ownerReferences": [{"uid": uid, "kind": "Sandbox", "name": "a"}]}});
    let p = s.create(&PODS, "default", pod, false).expect("pod");
    let key = ObjKey::new(&PODS, "default", "a");
    let mut stale = p.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let err = s
        .update(&PODS, &key, false, |_| Ok(stale))
        .expect_err("stale");
    assert_eq!(err.reason, "Conflict");
    s.delete(
        &SANDBOXES,
        &ObjKey::new(&SANDBOXES, "default", "a"),
        &DeleteOpts::default(),
        false,
    )
    .expect("delete");
    assert!(s.get(&key).is_none(), "pod garbage-collected");
}

#[test]
fn generate_name_and_generation() {
    let s = Store::new(100);
    let o = s
        .create(
            &PODS,
            "default",
            json!({"metadata": {"generateName": "x-"}, "spec": {"a": 1}}),
            false,
        )
        .expect("create");
    let name = o["metadata"]["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("x-") && name.len() == 7);
    let key = ObjKey::new(&PODS, "default", &name);
    let u = s
        .update(&PODS, &key, false, |old| {
            let mut n = old.clone();
            n["spec"]["a"] = json!(2);
            Ok(n)
        })
        .expect("update");
    assert_eq!(u["metadata"]["generation"], json!(2));
}

#[test]
fn compacted_watch_is_gone() {
    let s = Store::new(2);
    for i in 0..5 {
        s.create(
            &PODS,
            "default",
            json!({"metadata": {"name": format!("p{i}")}}),
            false,
        )
        .expect("create");
    }
    let err = s
        .watch(&PODS, None, &Filter::default(), Some(2))
        .err()
        .expect("gone");
    assert_eq!(err.code, 410);
    let ok = s
        .watch(&PODS, None, &Filter::default(), Some(s.current_rv() - 1))
        .expect("recent");
    assert_eq!(ok.backlog.len(), 1);
}
