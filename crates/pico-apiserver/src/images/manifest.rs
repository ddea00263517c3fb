//! The registry documents pico reads: image indexes, manifests and image configs (OCI and
//! Docker v2 schema 2, which share their field names).

use serde::{Deserialize, Serialize};

/// Every manifest kind pico understands, for the `Accept` header.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index or a manifest: an index is the one with a `manifests` list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// The part of an image config that shapes a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConfigBlob {
    #[serde(default)]
    pub config: Option<ImageConfig>,
}

/// This machine's platform as OCI names it.
pub fn this_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        other => (other, None),
    }
}

/// The entry of an index for this machine (linux, this architecture; a variant only has
/// to match when both name one).
pub fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let (arch, variant) = this_platform();
    manifests.iter().find(|m| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && match (&p.variant, variant) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_this_machines_linux_entry() {
        let (arch, _) = this_platform();
        let entry = |os: &str, arch: &str, digest: &str| Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
        };
        let list = vec![
            entry("linux", "s390x", "a"),
            entry("windows", arch, "b"),
            entry("linux", arch, "c"),
        ];
        assert_eq!(pick_platform(&list).map(|d| d.digest.as_str()), Some("c"));
        assert!(pick_platform(&list[..2]).is_none());
    }
}
