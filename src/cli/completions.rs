//! `loom completions bash|zsh|fish`: completion scripts that also offer the
//! configured job and node names.
//!
//! clap_complete writes the static part (commands, options); a small wrapper per
//! shell asks `loom jobs --names` / `loom nodes --names` (honouring `-c` on the
//! command line being completed, or `$LOOM_CONFIG`) where a job or node is expected.

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell: bash, zsh or fish
    pub shell: Shell,
}

/// Subcommands whose first positional argument is a job name.
const TAKES_JOB: &str = "run next enable disable history tail";

pub(crate) fn execute(args: &Args) -> anyhow::Result<Outcome> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "loom", &mut script);
    let mut script = String::from_utf8(script)?;
    match args.shell {
        Shell::Bash => script.push_str(&bash()),
        Shell::Fish => script.push_str(&fish()),
        Shell::Zsh => script = zsh(script),
        _ => {}
    }
    crate::cli::output::stdout(format_args!("{script}"));
    Ok(Outcome::Success)
}

fn bash() -> String {
    format!(
        r#"
# Job and node names, from the configuration named on the line (-c) or the default.
_loom_names() {{
    local i config=()
    for ((i = 1; i < ${{#COMP_WORDS[@]}}; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -c|--config) config=(-c "${{COMP_WORDS[i+1]}}") ;;
        esac
    done
    loom "${{config[@]}}" "$1" --names 2>/dev/null
}}

_loom_dynamic() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" sub="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -c|--config|--server|--token|--token-file|-n|--node|-l|--limit|--fires) ((i++)) ;;
            -*) ;;
            *) sub="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    if [[ "$prev" == "-n" || "$prev" == "--node" ]]; then
        COMPREPLY=($(compgen -W "$(_loom_names nodes)" -- "$cur"))
        return 0
    fi
    if [[ " {TAKES_JOB} " == *" $sub "* && "$cur" != -* && "$prev" == "$sub" ]]; then
        COMPREPLY=($(compgen -W "$(_loom_names jobs)" -- "$cur"))
        return 0
    fi
    _loom "$@"
}}
complete -F _loom_dynamic -o bashdefault -o default loom
"#
    )
}

fn fish() -> String {
    format!(
        r#"
# Job and node names from the configuration.
complete -c loom -n "__fish_seen_subcommand_from {TAKES_JOB}" -f -a "(loom jobs --names 2>/dev/null)"
complete -c loom -n "__fish_seen_subcommand_from run history" -l node -s n -x -a "(loom nodes --names 2>/dev/null)"
"#
    )
}

/// Points zsh's completion of job and node values at the configured names.
fn zsh(script: String) -> String {
    let script = script.replace(":JOB:_default", ":JOB:_loom_jobs").replace(":NODE:_default", ":NODE:_loom_nodes");
    let helpers = r#"
_loom_jobs() { local -a names; names=(${(f)"$(loom jobs --names 2>/dev/null)"}); compadd -a names }
_loom_nodes() { local -a names; names=(${(f)"$(loom nodes --names 2>/dev/null)"}); compadd -a names }
"#;
    match script.find("#compdef loom\n") {
        Some(at) => {
            let (head, tail) = script.split_at(at + "#compdef loom\n".len());
            format!("{head}{helpers}{tail}")
        }
        None => format!("{helpers}{script}"),
    }
}
