//! Image references as Docker spells them: `python:3.11`, `ghcr.io/o/r@sha256:…`,
//! `127.0.0.1:5000/team/tool:1` — split into registry, repository and tag or digest.

use std::fmt;

/// The registry a reference without a host names.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/python`, `team/tool`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (text, None),
        };
        if let Some(digest) = &digest
            && !is_sha256_digest(digest)
        {
            return None;
        }
        // A tag follows the last ':' that comes after the last '/' (a host may have a port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && (tag.is_empty()
                || tag.len() > 128
                || !tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            // The first component is a host when it looks like one (as Docker decides).
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first != first.to_lowercase() =>
            {
                (first.to_owned(), rest.to_owned())
            }
            Some(_) => (DOCKER_HUB.to_owned(), name.to_owned()),
            None => (DOCKER_HUB.to_owned(), format!("library/{name}")),
        };
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repository || registry.is_empty() {
            return None;
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Some(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).expect(text);
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn docker_hub_names_get_library_and_latest() {
        assert_eq!(
            parts("python"),
            (
                "docker.io".into(),
                "library/python".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(parts("python:3.11").2.as_deref(), Some("3.11"));
        assert_eq!(parts("team/tool:1").1, "team/tool");
    }

    #[test]
    fn hosts_ports_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let (registry, repository, tag, got) =
            parts(&format!("127.0.0.1:5000/pico-test/python:3@{digest}"));
        assert_eq!(registry, "127.0.0.1:5000");
        assert_eq!(repository, "pico-test/python");
        assert_eq!(tag.as_deref(), Some("3"));
        assert_eq!(got.as_deref(), Some(digest.as_str()));
        assert_eq!(parts("localhost/x").0, "localhost");
        assert_eq!(parts("registry:5000/team/tool").0, "registry:5000");
        assert_eq!(
            parts("registry:5000/team/tool").2.as_deref(),
            Some("latest")
        );
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "UPPER",
            "a@sha256:12",
            "a:",
            "a:b c",
            "/x",
            "a//b",
            "host.io/",
        ] {
            assert!(Reference::parse(bad).is_none(), "{bad}");
        }
    }
}
