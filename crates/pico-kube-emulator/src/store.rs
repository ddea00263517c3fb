//! The in-memory object store: objects, one global resourceVersion counter, watch history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
pub use crate::meta::{now_rfc3339, rv_of};
use crate::meta::{random_suffix, valid_name};
use crate::resources::{NAMESPACES, ResourceDef};
use crate::selector::Filter;

/// Where an object lives: resource type, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub res: &'static str,
    pub ns: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(def: &ResourceDef, ns: &str, name: &str) -> Self {
        let ns = if def.namespaced { ns } else { "" };
        Self {
            res: def.key,
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches replay it; `prev` lets a filtered watch turn a change that leaves
/// its selector into DELETED, as kube-apiserver does.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: ObjKey,
    pub kind: EventType,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// What a new watch starts from, taken atomically with its subscription so nothing is missed.
pub struct WatchStart {
    /// Objects to send as synthetic ADDED events (watch without a resourceVersion).
    pub initial: Vec<Arc<Value>>,
    /// Retained events newer than the requested resourceVersion.
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    /// Cancelled when the emulator is told to drop every open watch.
    pub epoch: CancellationToken,
    pub rv: u64,
}

/// Options of a delete call.
#[derive(Debug, Default, Clone)]
pub struct DeleteOpts {
    pub orphan: bool,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
}

struct State {
    rv: u64,
    objects: BTreeMap<ObjKey, Arc<Value>>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Events up to and including this resourceVersion are no longer retained.
    compacted: u64,
    epoch: CancellationToken,
}

pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(16384);
        let state = State {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            epoch: CancellationToken::new(),
        };
        let store = Self {
            state: Mutex::new(state),
            tx,
        };
        for ns in ["default", "kube-system", "kube-public"] {
            let obj = json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            // Seeding an empty store cannot collide.
            let _ = store.create(&NAMESPACES, "", obj, false);
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn get(&self, key: &ObjKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    fn matching(state: &State, res: &str, ns: Option<&str>, filter: &Filter) -> Vec<Arc<Value>> {
        state
            .objects
            .iter()
            .filter(|(k, _)| k.res == res && ns.is_none_or(|n| k.ns == n))
            .filter(|(_, v)| filter.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Matching objects and the list's resourceVersion.
    pub fn list(&self, res: &str, ns: Option<&str>, filter: &Filter) -> (Vec<Arc<Value>>, u64) {
        let st = self.lock();
        (Self::matching(&st, res, ns, filter), st.rv)
    }

    fn emit(
        &self,
        st: &mut State,
        key: ObjKey,
        kind: EventType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv: st.rv,
            key,
            kind,
            object,
            prev,
        });
        st.history.push_back(ev.clone());
        while st.history.len() > st.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        // No receiver is fine: nobody watches yet.
        let _ = self.tx.send(ev);
    }

    /// Creates `obj` (already defaulted by the caller), assigning name, uid and resourceVersion.
    pub fn create(
        &self,
        def: &ResourceDef,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        let meta = &mut obj["metadata"];
        if !meta.is_object() {
            *meta = json!({});
        }
        if def.namespaced {
            match meta["namespace"].as_str() {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => meta["namespace"] = json!(ns),
            }
        }
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{}", random_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    def.group,
                    def.plural,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if !valid_name(&name) {
            let msg = format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            );
            return Err(ApiError::invalid(def.group, def.plural, &name, msg));
        }
        let key = ObjKey::new(def, ns, &name);
        let mut st = self.lock();
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def.group, def.plural, &name));
        }
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("managedFields");
            m.remove("selfLink");
        }
        obj["apiVersion"] = json!(def.api_version(def.versions[0]));
        obj["kind"] = json!(def.kind);
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            return Ok(obj);
        }
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let stored = Arc::new(obj.clone());
        st.objects.insert(key.clone(), stored.clone());
        self.emit(&mut st, key, EventType::Added, stored, None);
        Ok(obj)
    }

    /// Replaces an object with what `f` makes of it. A non-empty `metadata.resourceVersion` in
    /// the result must equal the current one (optimistic concurrency), else 409 Conflict.
    pub fn update(
        &self,
        def: &ResourceDef,
        key: &ObjKey,
        dry_run: bool,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let old = st
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, &key.name))?;
        let mut new = f(&old)?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        let wanted = rv_of(&new);
        if !wanted.is_empty() && wanted != rv_of(&old) {
            return Err(ApiError::conflict(def.group, def.plural, &key.name));
        }
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        if new == *old {
            return Ok(new);
        }
        if spec_part(&new) != spec_part(&old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        if dry_run {
            return Ok(new);
        }
        st.rv += 1;
        new["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let stored = Arc::new(new.clone());
        st.objects.insert(key.clone(), stored.clone());
        self.emit(&mut st, key.clone(), EventType::Modified, stored, Some(old));
        Ok(new)
    }

    /// Deletes an object, then its dependents by ownerReference (or orphans them).
    pub fn delete(
        &self,
        def: &ResourceDef,
        key: &ObjKey,
        opts: &DeleteOpts,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let old = st
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, &key.name))?;
        let uid = old["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if opts
            .precondition_rv
            .as_deref()
            .is_some_and(|rv| rv != rv_of(&old))
            || opts.precondition_uid.as_deref().is_some_and(|u| u != uid)
        {
            return Err(ApiError::conflict(def.group, def.plural, &key.name));
        }
        if dry_run {
            return Ok((*old).clone());
        }
        let deleted = self.remove_locked(&mut st, key);
        let mut pending = vec![(uid, opts.orphan)];
        while let Some((owner, orphan)) = pending.pop() {
            let dependents: Vec<ObjKey> = st
                .objects
                .iter()
                .filter(|(_, v)| owned_by(v, &owner))
                .map(|(k, _)| k.clone())
                .collect();
            for dep in dependents {
                if orphan {
                    self.orphan_locked(&mut st, &dep, &owner);
                } else if let Some(d) = self.remove_locked(&mut st, &dep) {
                    pending.push((
                        d["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                        false,
                    ));
                }
            }
        }
        deleted.ok_or_else(|| ApiError::not_found(def.group, def.plural, &key.name))
    }

    fn remove_locked(&self, st: &mut State, key: &ObjKey) -> Option<Value> {
        let old = st.objects.remove(key)?;
        st.rv += 1;
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        self.emit(
            st,
            key.clone(),
            EventType::Deleted,
            Arc::new(gone.clone()),
            Some(old),
        );
        Some(gone)
    }

    fn orphan_locked(&self, st: &mut State, key: &ObjKey, owner: &str) {
        let Some(old) = st.objects.get(key).cloned() else {
            return;
        };
        let mut new = (*old).clone();
        if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"].as_str() != Some(owner));
        }
        st.rv += 1;
        new["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let stored = Arc::new(new);
        st.objects.insert(key.clone(), stored.clone());
        self.emit(st, key.clone(), EventType::Modified, stored, Some(old));
    }

    /// Starts a watch: from `rv` (410 Gone when its events are no longer retained), or, without
    /// one, from now with the current matching objects as synthetic ADDED events.
    pub fn watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        filter: &Filter,
        rv: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let st = self.lock();
        let (initial, backlog) = match rv {
            None => (Self::matching(&st, def.key, ns, filter), Vec::new()),
            Some(r) if r < st.compacted => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {r} ({})",
                    st.rv
                )));
            }
            Some(r) => (
                Vec::new(),
                st.history.iter().filter(|e| e.rv > r).cloned().collect(),
            ),
        };
        Ok(WatchStart {
            initial,
            backlog,
            rx: self.tx.subscribe(),
            epoch: st.epoch.clone(),
            rv: st.rv,
        })
    }

    /// Forgets all retained events, so any watch resuming from an older resourceVersion gets 410.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Ends every open watch stream, as an API server restart or a dropped connection would.
    pub fn drop_watches(&self) {
        let mut st = self.lock();
        st.epoch.cancel();
        st.epoch = CancellationToken::new();
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
