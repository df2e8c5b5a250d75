//! The bundled task modules, compiled into the binary so an installed `loom` needs
//! no files beside it. Looked up after the operator's own `taskspath` folders.

/// `(module, source)`; the module is the path under `stdlib/` without `.rhai`.
pub(crate) const MODULES: &[(&str, &str)] = &[
    ("loom/system", include_str!("../../stdlib/loom/system.rhai")),
    ("fabric/api", include_str!("../../stdlib/fabric/api.rhai")),
    ("loom/resource/command", include_str!("../../stdlib/loom/resource/command.rhai")),
    ("loom/resource/directory", include_str!("../../stdlib/loom/resource/directory.rhai")),
    ("loom/resource/file", include_str!("../../stdlib/loom/resource/file.rhai")),
    ("loom/resource/line", include_str!("../../stdlib/loom/resource/line.rhai")),
    ("loom/resource/link", include_str!("../../stdlib/loom/resource/link.rhai")),
];

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
