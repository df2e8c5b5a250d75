//! The bundled task modules, compiled into the binary so an installed `loom` needs
//! no files beside it. Looked up after the operator's own `taskspath` folders.

/// `(module, source)`; the module is the path under `stdlib/` without `.rhai`.
pub(crate) const MODULES: &[(&str, &str)] = &[
    ("loom/system", include_str!("../../stdlib/loom/system.rhai")),
    ("loom/resource/package", include_str!("../../stdlib/loom/resource/package.rhai")),
    ("loom/resource/service", include_str!("../../stdlib/loom/resource/service.rhai")),
    ("loom/resource/user", include_str!("../../stdlib/loom/resource/user.rhai")),
    ("loom/resource/group", include_str!("../../stdlib/loom/resource/group.rhai")),
    ("loom/resource/authorized_key", include_str!("../../stdlib/loom/resource/authorized_key.rhai")),
    ("loom/resource/cron", include_str!("../../stdlib/loom/resource/cron.rhai")),
    ("loom/resource/mount", include_str!("../../stdlib/loom/resource/mount.rhai")),
    ("loom/debian/apt_source", include_str!("../../stdlib/loom/debian/apt_source.rhai")),
    ("loom/debian/unattended_upgrades", include_str!("../../stdlib/loom/debian/unattended_upgrades.rhai")),
    ("loom/nginx/site", include_str!("../../stdlib/loom/nginx/site.rhai")),
    ("loom/nginx/reload", include_str!("../../stdlib/loom/nginx/reload.rhai")),
    ("fabric/api", include_str!("../../stdlib/fabric/api.rhai")),
    ("loom/resource/command", include_str!("../../stdlib/loom/resource/command.rhai")),
    ("loom/resource/directory", include_str!("../../stdlib/loom/resource/directory.rhai")),
    ("loom/resource/file", include_str!("../../stdlib/loom/resource/file.rhai")),
    ("loom/resource/line", include_str!("../../stdlib/loom/resource/line.rhai")),
    ("loom/resource/link", include_str!("../../stdlib/loom/resource/link.rhai")),
];

/// The bundled resource types (`loom/resource/TYPE`), by name, sorted.
pub(crate) fn resource_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = MODULES.iter().filter_map(|(name, _)| name.strip_prefix("loom/resource/")).collect();
    types.sort_unstable();
    types
}

pub(crate) fn find(module: &str) -> Option<&'static str> {
    MODULES.iter().find(|(name, _)| *name == module).map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_file_in_stdlib_is_bundled() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rhai") {
                    let module = path.strip_prefix(&root).unwrap().with_extension("");
                    let module = module.to_string_lossy();
                    assert!(super::find(&module).is_some(), "{module} is not in stdlib::MODULES");
                }
            }
        }
    }
}
