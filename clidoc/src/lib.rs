//! What `mcsd` and `mcs` say about themselves beyond their options: exit status, files and
//! environment — once, for `--help` (the epilogue) and for the man pages — and the
//! `generate-assets DIR` both binaries have for packaging: a man page for the command and
//! one per subcommand (`mcsd-check-config(8)`, `mcs-admin-audit(1)`, …) in `DIR/man`, and
//! bash, zsh and fish completions in `DIR/completions`.

use std::fmt::Write as _;
use std::path::Path;

/// The sections a command's page has besides those clap describes.
pub struct Epilogue {
    /// `(code, meaning)`.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// `(variable, meaning)`.
    pub environment: &'static [(&'static str, &'static str)],
    /// `(path, what it is)`.
    pub files: &'static [(&'static str, &'static str)],
}

impl Epilogue {
    /// The plain-text form, for `after_long_help`.
    pub fn help(&self) -> String {
        let mut out = String::new();
        for (title, rows) in self.sections() {
            let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
            let _ = writeln!(out, "{title}:");
            for (k, v) in rows {
                let _ = writeln!(out, "  {k:width$}  {}", wrap(v, 80 - width - 4, width + 4));
            }
            out.push('\n');
        }
        out.trim_end().to_owned()
    }

    /// The same as man(7) sections.
    fn roff(&self) -> String {
        let mut out = String::new();
        for (title, rows) in self.sections() {
            let _ = writeln!(out, ".SH \"{}\"", title.to_uppercase());
            for (k, v) in rows {
                let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", escape(k), escape(v));
            }
        }
        out
    }

    fn sections(&self) -> impl Iterator<Item = (&'static str, &'static [(&'static str, &'static str)])> {
        [("Exit status", self.exit_status), ("Environment", self.environment), ("Files", self.files)]
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
    }
}

/// `text` in lines of at most `width` characters (longer words stay whole), the lines after
/// the first indented by `indent` spaces.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width.max(20) {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

/// roff text: backslashes doubled, and a leading `.` or `'` not taken as a request.
fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with(['.', '\'']) { format!("\\&{s}") } else { s }
}

/// Write the man pages (in `section`) and the completions of `cmd` into `dir`.
pub fn generate(cmd: clap::Command, section: &str, epilogue: &Epilogue, dir: &Path) -> std::io::Result<()> {
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    // The command's own page: clap's sections, then ours where clap would put the epilogue
    // as a section called EXTRA.
    let page = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut roff = Vec::new();
    page.render_title(&mut roff)?;
    page.render_name_section(&mut roff)?;
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    page.render_options_section(&mut roff)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        page.render_subcommands_section(&mut roff)?;
    }
    roff.extend_from_slice(epilogue.roff().as_bytes());
    if cmd.get_version().is_some() {
        page.render_version_section(&mut roff)?;
    }
    std::fs::write(man.join(format!("{name}.{section}")), roff)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), format!("{name}-{}", sub.get_name()), section, &man)?;
    }
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
    }
    Ok(())
}

fn subcommand_pages(cmd: clap::Command, name: String, section: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub.clone(), format!("{name}-{}", sub.get_name()), section, dir)?;
    }
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.name(name.clone())).section(section).render(&mut roff)?;
    std::fs::write(dir.join(format!("{name}.{section}")), roff)
}

/// The arguments of `cmd` and its subcommands (shown ones) that have no help text, as
/// `"<command path> <argument id>"`; for each binary's test that every one is described.
pub fn undocumented_arguments(cmd: clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let undocumented = cmd.get_arguments().filter(|a| a.get_help().is_none() && a.get_long_help().is_none());
        missing.extend(undocumented.filter(|a| !a.is_hide_set()).map(|a| format!("{path} {}", a.get_id())));
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut cmd = cmd;
    cmd.build();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    walk(&cmd, cmd.get_name(), &mut missing);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Epilogue = Epilogue {
        exit_status: &[("0", "success"), ("78", "configuration error")],
        environment: &[],
        files: &[("/etc/x.toml", "the configuration")],
    };

    #[test]
    fn arguments_without_help_are_named() {
        let cmd = clap::Command::new("demo").subcommand(
            clap::Command::new("run")
                .arg(clap::Arg::new("config").long("config").help("The file"))
                .arg(clap::Arg::new("quiet").long("quiet")),
        );
        assert_eq!(undocumented_arguments(cmd), ["demo run quiet"]);
    }

    #[test]
    fn the_epilogue_as_help_and_as_roff() {
        assert_eq!(
            E.help(),
            "Exit status:\n  0   success\n  78  configuration error\n\nFiles:\n  /etc/x.toml  the configuration"
        );
        let roff = E.roff();
        assert!(roff.starts_with(".SH \"EXIT STATUS\"\n.TP\n\\fB0\\fR\nsuccess\n"), "{roff}");
        assert!(roff.contains(".SH \"FILES\"") && !roff.contains("ENVIRONMENT"), "{roff}");
        assert_eq!(escape(".x -y"), "\\&.x \\-y");
        assert_eq!(wrap("aaa bbb ccc ddd eee fff ggg hhh iii", 20, 4), "aaa bbb ccc ddd eee\n    fff ggg hhh iii");
    }

    #[test]
    fn pages_for_the_command_and_each_subcommand_and_three_completions() {
        let cmd = clap::Command::new("demo")
            .about("A demo")
            .after_long_help(E.help())
            .subcommand(clap::Command::new("run").about("Run it"))
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = std::env::temp_dir().join(format!("clidoc-test-{}", std::process::id()));
        generate(cmd, "8", &E, &dir).unwrap();
        let page = std::fs::read_to_string(dir.join("man/demo.8")).unwrap();
        assert!(page.contains(".SH \"EXIT STATUS\"") && !page.contains("EXTRA"), "{page}");
        assert!(dir.join("man/demo-run.8").exists() && !dir.join("man/demo-secret.8").exists());
        for f in ["demo.bash", "_demo", "demo.fish"] {
            assert!(dir.join("completions").join(f).exists(), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
