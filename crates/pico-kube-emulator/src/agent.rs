//! Running a `pico-agent` container as a local process: volumes as temp dirs, rewritten argv.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;
use tempfile::TempDir;

use crate::claims::Claims;
use crate::resources::SECRETS;
use crate::store::{ObjKey, Store};

/// The container that runs `pico-agent`: its command's (or, without one, its args') first
/// element has that file name.
pub fn agent_container(pod: &Value) -> Option<&Value> {
    pod["spec"]["containers"].as_array()?.iter().find(|c| {
        let argv = argv(c);
        argv.first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|f| f == "pico-agent"))
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Kubernetes' argv: `command` then `args`.
fn argv(c: &Value) -> Vec<String> {
    let mut v = strings(&c["command"]);
    v.extend(strings(&c["args"]));
    v
}

/// The pod's volumes materialised on the host; the directories live as long as this does.
pub struct Volumes {
    _dirs: Vec<TempDir>,
    /// (mountPath in the container, host directory), longest mountPath first.
    mounts: Vec<(String, PathBuf)>,
    home: PathBuf,
}

fn write_secret(dir: &Path, secret: &Value, volume: &Value) -> std::io::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mode = volume["defaultMode"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644);
    let data = secret["data"].as_object().cloned().unwrap_or_default();
    let items = volume["items"].as_array().cloned().unwrap_or_default();
    let files: Vec<(String, String, Option<u64>)> = if items.is_empty() {
        data.keys().map(|k| (k.clone(), k.clone(), None)).collect()
    } else {
        items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("").to_string(),
                    i["path"].as_str().unwrap_or("").to_string(),
                    i["mode"].as_u64(),
                )
            })
            .collect()
    };
    for (key, path, item_mode) in files {
        let Some(encoded) = data.get(&key).and_then(Value::as_str) else {
            continue;
        };
        let bytes = b64
            .decode(encoded)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let target = dir.join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        let m = item_mode
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(mode);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(m))?;
    }
    Ok(())
}

/// Why volumes could not be made yet.
pub enum VolumeError {
    /// The Secret does not exist (yet): the kubelet retries when secrets change.
    MissingSecret(String),
    Io(std::io::Error),
}

/// Makes a temp dir per volume the container mounts; Secret volumes get the Secret's keys as files.
pub fn prepare_volumes(
    store: &Store,
    claims: &Claims,
    ns: &str,
    pod: &Value,
    container: &Value,
) -> Result<Volumes, VolumeError> {
    let tmp = || {
        tempfile::Builder::new()
            .prefix("pico-kube-emu-")
            .tempdir()
            .map_err(VolumeError::Io)
    };
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut dirs = Vec::new();
    let mut by_volume: HashMap<String, PathBuf> = HashMap::new();
    let mut mounts = Vec::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(vname), Some(mount_path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        let vol = volumes.iter().find(|v| v["name"] == vname);
        let claim = vol.and_then(|v| v["persistentVolumeClaim"]["claimName"].as_str());
        let dir = match (by_volume.get(vname), claim) {
            (Some(d), _) => d.clone(),
            // A claim's data outlives the pod: not one of the pod's temp dirs.
            (None, Some(claim)) => {
                let d = claims.dir(ns, claim).map_err(VolumeError::Io)?;
                by_volume.insert(vname.to_string(), d.clone());
                d
            }
            (None, None) => {
                let d = tmp()?;
                let vol = volumes
                    .iter()
                    .find(|v| v["name"] == vname)
                    .cloned()
                    .unwrap_or(Value::Null);
                if let Some(sname) = vol["secret"]["secretName"].as_str() {
                    match store.get(&ObjKey::new(&SECRETS, ns, sname)) {
                        Some(secret) => write_secret(d.path(), &secret, &vol["secret"])
                            .map_err(VolumeError::Io)?,
                        None if vol["secret"]["optional"] == Value::Bool(true) => {}
                        None => return Err(VolumeError::MissingSecret(sname.to_string())),
                    }
                }
                let p = d.path().to_path_buf();
                by_volume.insert(vname.to_string(), p.clone());
                dirs.push(d);
                p
            }
        };
        let host = match m["subPath"].as_str() {
            Some(sub) if !sub.is_empty() => dir.join(sub),
            _ => dir,
        };
        mounts.push((mount_path.trim_end_matches('/').to_string(), host));
    }
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let home = tmp()?;
    let home_path = home.path().to_path_buf();
    dirs.push(home);
    Ok(Volumes {
        _dirs: dirs,
        mounts,
        home: home_path,
    })
}

impl Volumes {
    /// Maps a container path under a mountPath to the host directory standing in for it.
    fn rewrite(&self, arg: &str) -> Option<String> {
        self.mounts.iter().find_map(|(mp, host)| {
            let rest = arg.strip_prefix(mp.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", host.display()))
        })
    }

    fn rewrite_arg(&self, arg: &str) -> String {
        if let Some(r) = self.rewrite(arg) {
            return r;
        }
        if let Some((flag, value)) = arg.split_once('=')
            && let Some(r) = self.rewrite(value)
        {
            return format!("{flag}={r}");
        }
        arg.to_string()
    }
}

/// The process to start: arguments (without argv[0]), environment and working directory.
pub struct AgentCommand {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub port: u16,
}

fn port_of(listen: &str) -> Option<u16> {
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Rewrites the container's argv for the host: `--listen` on the pod's own loopback address,
/// mount paths to their temp dirs, and a `--home` outside every mount to a temp dir.
pub fn agent_command(container: &Value, vols: &Volumes, ip: Ipv4Addr) -> AgentCommand {
    let default_port = container["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(22);
    let argv = argv(container);
    let mut args = Vec::new();
    let mut port = default_port;
    let mut has_listen = false;
    let mut it = argv.into_iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let takes_value = flag == "--listen" || flag == "--home";
        if !takes_value {
            args.push(vols.rewrite_arg(&a));
            continue;
        }
        let value = inline.or_else(|| it.next()).unwrap_or_default();
        let value = if flag == "--listen" {
            has_listen = true;
            port = port_of(&value).unwrap_or(default_port);
            format!("{ip}:{port}")
        } else {
            vols.rewrite(&value)
                .unwrap_or_else(|| vols.home.display().to_string())
        };
        args.push(flag);
        args.push(value);
    }
    if !has_listen && args.first().is_some_and(|a| a == "serve") {
        args.push("--listen".into());
        args.push(format!("{ip}:{port}"));
    }
    let env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                vols.rewrite_arg(e["value"].as_str().unwrap_or("")),
            ))
        })
        .collect();
    let cwd = container["workingDir"]
        .as_str()
        .and_then(|w| vols.rewrite(w))
        .map_or_else(|| vols.home.clone(), PathBuf::from);
    AgentCommand {
        args,
        env,
        cwd,
        port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::SECRETS;
    use serde_json::json;

    #[test]
    fn secrets_become_files_and_paths_are_rewritten() {
        let store = Store::new(100);
        let secret = json!({"metadata": {"name": "keys"}, "data": {"host_key": "aG9zdA==", "authorized_keys": "YXV0aA=="}});
        store.create(&SECRETS, "ns", secret, false).expect("secret");
        let pod = json!({"spec": {
            "volumes": [{"name": "k", "secret": {"secretName": "keys"}}, {"name": "bin", "emptyDir": {}}],
            "containers": [{
                "name": "agent", "image": "x",
                "command": ["/opt/pico/pico-agent"],
                "args": ["serve", "--listen", "0.0.0.0:2222", "--host-key", "/etc/pico/host_key",
                         "--authorized-keys=/etc/pico/authorized_keys", "--home", "/home/sandbox"],
                "volumeMounts": [{"name": "k", "mountPath": "/etc/pico"}, {"name": "bin", "mountPath": "/opt/pico"}],
            }],
        }});
        let c = agent_container(&pod).expect("agent container");
        let claims = Claims::new().expect("claims");
        let vols = prepare_volumes(&store, &claims, "ns", &pod, c)
            .ok()
            .expect("volumes");
        let cmd = agent_command(c, &vols, Ipv4Addr::new(127, 0, 1, 7));
        assert_eq!(cmd.port, 2222);
        assert_eq!(&cmd.args[..3], ["serve", "--listen", "127.0.1.7:2222"]);
        let host_key = PathBuf::from(&cmd.args[4]);
        assert_eq!(std::fs::read(&host_key).expect("host key"), b"host");
        let auth = cmd.args[5]
            .strip_prefix("--authorized-keys=")
            .expect("inline flag");
        assert_eq!(std::fs::read(auth).expect("authorized keys"), b"auth");
        assert_eq!(cmd.args[6], "--home");
        assert!(Path::new(&cmd.args[7]).is_dir());
    }

    #[test]
    fn missing_secret_waits() {
        let store = Store::new(100);
        let pod = json!({"spec": {"volumes": [{"name": "k", "secret": {"secretName": "nope"}}],
            "containers": [{"name": "a", "command": ["pico-agent", "serve"], "volumeMounts": [{"name": "k", "mountPath": "/k"}]}]}});
        let c = agent_container(&pod).expect("agent");
        assert!(
            matches!(prepare_volumes(&store, &Claims::new().expect("claims"), "ns", &pod, c), Err(VolumeError::MissingSecret(s)) if s == "nope")
        );
    }
}
