//! Images on the emulated node: the pull policy a kube-apiserver defaults from the tag, and
//! the kubelet's view of which images it has (those "loaded" into it, as `kind load` does).
//! The emulated node has no registry, so any pull fails as an offline node's would.

use serde_json::Value;

/// `docker.io/library/debian:latest` for `debian`; what `kind load` and containerd list.
pub fn normalize(image: &str) -> String {
    let (name, suffix) = match image.find('@') {
        Some(at) => (&image[..at], &image[at..]),
        None => (image, ""),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = if suffix.is_empty() && !last.contains(':') {
        format!("{name}:latest")
    } else {
        format!("{name}{suffix}")
    };
    let first = tagged.split('/').next().unwrap_or("");
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        tagged
    } else if tagged.contains('/') {
        format!("docker.io/{tagged}")
    } else {
        format!("docker.io/library/{tagged}")
    }
}

/// kube-apiserver's default: `Always` for `:latest` or no tag (and no digest), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// Why the kubelet cannot get a container's image: (waiting reason, message, gives up for good).
pub struct PullProblem {
    pub reason: &'static str,
    pub message: String,
    pub fatal: bool,
}

/// `None` when the image is there (or no image list is kept: every image counts as present).
pub fn problem(loaded: Option<&[String]>, container: &Value) -> Option<PullProblem> {
    let loaded = loaded?;
    let image = container["image"].as_str().unwrap_or("");
    let full = normalize(image);
    let present = loaded.iter().any(|l| normalize(l) == full);
    let policy = container["imagePullPolicy"]
        .as_str()
        .unwrap_or_else(|| default_pull_policy(image));
    match policy {
        "Never" if present => None,
        "Never" => Some(PullProblem {
            reason: "ErrImageNeverPull",
            message: format!(
                "Container image \"{image}\" is not present with pull policy of Never"
            ),
            fatal: true,
        }),
        "IfNotPresent" if present => None,
        // Always, or IfNotPresent without the image: a pull, which has no registry to reach.
        _ => Some(PullProblem {
            reason: "ErrImagePull",
            message: format!(
                "failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": \
                 pull access denied, repository does not exist or may require authorization \
                 (pull policy {policy}; the node has {} loaded image(s))",
                loaded.len()
            ),
            fatal: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_policies() {
        assert_eq!(normalize("debian"), "docker.io/library/debian:latest");
        assert_eq!(normalize("pico:0.1.0"), "docker.io/library/pico:0.1.0");
        assert_eq!(normalize("team/x:1"), "docker.io/team/x:1");
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize("r.io/x@sha256:ab"), "r.io/x@sha256:ab");
        assert_eq!(default_pull_policy("pico:latest"), "Always");
        assert_eq!(default_pull_policy("pico"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/pico"), "Always");
        assert_eq!(default_pull_policy("pico:0.1.0"), "IfNotPresent");
        assert_eq!(default_pull_policy("x@sha256:ab"), "IfNotPresent");
    }

    #[test]
    fn only_loaded_images_run_without_a_pull() {
        let loaded = vec![
            "pico:latest".to_string(),
            "docker.io/library/debian:12".into(),
        ];
        let c = |image: &str, policy: &str| json!({"image": image, "imagePullPolicy": policy});
        assert!(problem(Some(&loaded), &c("debian:12", "IfNotPresent")).is_none());
        let always = problem(Some(&loaded), &c("pico:latest", "Always")).map(|p| p.reason);
        assert_eq!(always, Some("ErrImagePull"));
        assert!(problem(Some(&loaded), &c("pico:latest", "IfNotPresent")).is_none());
        let never = problem(Some(&loaded), &c("other:1", "Never")).map(|p| p.reason);
        assert_eq!(never, Some("ErrImageNeverPull"));
        assert!(problem(None, &c("other:1", "Always")).is_none());
    }
}
