//! The Debian package (`cargo xtask deb`), installed with dpkg into a throw-away root: every
//! file where the issue lists it, the conffile kept across a reinstall and left by `remove`,
//! man pages that render, completions that parse, binaries that run, and the HSM drop-ins
//! merging into the unit without a warning.

use std::path::Path;
use std::process::Command;

use mcs_e2e::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// `dpkg` acting on `root` only (its maintainer scripts see `DPKG_ROOT` and do nothing).
fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--force-script-chrootless", "--force-depends", "--force-unsafe-io"])
        .arg(format!("--log={}", root.join("dpkg.log").display()));
    c
}

/// Without grotty's overstrikes (`X\bX` bold, `_\bX` underlined) that `man` writes to a pipe.
fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn the_deb_installs_into_a_scratch_root_with_every_listed_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The debug binaries `cargo xtask test` has built; no cargo run from inside a test.
    run(Command::new(bin("xtask")).args(["deb", "--debug", "--no-build", "--out"]).arg(&out));
    let deb = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: mcsd") && info.contains("conffiles"), "{info}");

    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    run(dpkg(&root).arg("--install").arg(&deb));
    let status = run(dpkg(&root).args(["--status", "mcsd"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Conffiles:") && status.contains("/etc/mcsd/mcsd.toml"), "{status}");

    for (path, want) in [
        ("usr/bin/mcsd", 0o755),
        ("usr/bin/mcs", 0o755),
        ("usr/lib/mcsd/plugins/libmcs_local_ca.so", 0o644),
        ("usr/lib/mcsd/plugins/libmcs_http_ra.so", 0o644),
        ("usr/lib/systemd/system/mcsd.service", 0o644),
        ("usr/lib/sysusers.d/mcsd.conf", 0o644),
        ("etc/mcsd/mcsd.toml", 0o640),
        ("usr/share/man/man8/mcsd.8.gz", 0o644),
        ("usr/share/man/man8/mcsd-check-config.8.gz", 0o644),
        ("usr/share/man/man1/mcs.1.gz", 0o644),
        ("usr/share/man/man1/mcs-admin-audit.1.gz", 0o644),
        ("usr/share/bash-completion/completions/mcsd", 0o644),
        ("usr/share/bash-completion/completions/mcs", 0o644),
        ("usr/share/zsh/vendor-completions/_mcsd", 0o644),
        ("usr/share/zsh/vendor-completions/_mcs", 0o644),
        ("usr/share/fish/vendor_completions.d/mcsd.fish", 0o644),
        ("usr/share/fish/vendor_completions.d/mcs.fish", 0o644),
        ("usr/share/doc/mcsd/operating.md", 0o644),
        ("usr/share/doc/mcsd/README.md", 0o644),
        ("usr/share/doc/mcsd/copyright", 0o644),
        ("usr/share/doc/mcsd/examples/softhsm.conf", 0o644),
        ("usr/share/doc/mcsd/examples/pcie-hsm.conf", 0o644),
        ("usr/share/doc/mcsd/examples/network-hsm.conf", 0o644),
        ("usr/share/doc/mcsd/examples/mcsd.rules.yml", 0o644),
        ("usr/share/doc/mcsd/examples/grafana-mcsd.json", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), want, "{path}");
    }
    // What the unit's Documentation= names is there.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/mcsd.service")).unwrap();
    let docs: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("Documentation=")).collect();
    for doc in docs.iter().flat_map(|d| d.split_whitespace()) {
        let file = match doc.strip_prefix("man:") {
            Some(page) => {
                let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
                format!("usr/share/man/man{section}/{name}.{section}.gz")
            }
            None => doc.strip_prefix("file:///").unwrap().to_owned(),
        };
        assert!(root.join(&file).is_file(), "Documentation={doc}: {file} is not installed");
    }
    let sysusers = std::fs::read_to_string(root.join("usr/lib/sysusers.d/mcsd.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u mcsd ") && l.ends_with("/var/lib/mcsd")), "{sysusers}");
    let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/mcsd.toml")).unwrap();
    assert_eq!(std::fs::read(root.join("etc/mcsd/mcsd.toml")).unwrap(), shipped);

    // Man pages render, with the sections the epilogue adds.
    for (page, needles) in [
        (
            "usr/share/man/man8/mcsd.8.gz",
            &["NAME", "mcsd - Mobile certificate", "EXIT STATUS", "FILES", "/run/mcsd/control.sock"][..],
        ),
        ("usr/share/man/man8/mcsd-check-config.8.gz", &["NAME", "mcsd-check-config", "--offline"][..]),
        ("usr/share/man/man1/mcs.1.gz", &["NAME", "EXIT STATUS", "ENVIRONMENT", "MCS_OUTPUT"][..]),
        ("usr/share/man/man1/mcs-admin-platform-grant.1.gz", &["NAME", "--mode", "--until"][..]),
    ] {
        let text = plain(&run(Command::new("man").arg("-l").arg(root.join(page)).env("MANWIDTH", "100")));
        for n in needles {
            assert!(text.contains(n), "{page} lacks {n}:\n{text}");
        }
        assert!(!text.contains("EXTRA"), "{page}");
    }
    // Completions parse (bash here; zsh where installed).
    for f in ["mcsd", "mcs"] {
        run(Command::new("bash").arg("-n").arg(root.join("usr/share/bash-completion/completions").join(f)));
        let sourced = run(Command::new("bash").arg("-c").arg(format!(
            "source {} && complete -p {f}",
            root.join("usr/share/bash-completion/completions").join(f).display()
        )));
        assert!(sourced.contains(&format!(" {f}")), "{sourced}");
    }
    // The installed binaries run.
    let version = run(Command::new(root.join("usr/bin/mcsd")).arg("--version"));
    assert!(version.starts_with("mcsd "), "{version}");
    let version = run(Command::new(root.join("usr/bin/mcs")).arg("--version"));
    assert!(version.starts_with("mcs "), "{version}");

    // An operator's edit of the conffile survives a reinstall, and `remove` leaves it;
    // `purge` takes it.
    let conf = root.join("etc/mcsd/mcsd.toml");
    let edited = format!("{}\n# edited by the operator\n", std::fs::read_to_string(&conf).unwrap());
    std::fs::write(&conf, &edited).unwrap();
    run(dpkg(&root).args(["--force-confold", "--install"]).arg(&deb));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    run(dpkg(&root).args(["--remove", "mcsd"]));
    assert!(!root.join("usr/bin/mcsd").exists() && !root.join("usr/lib/mcsd/plugins/libmcs_local_ca.so").exists());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    run(dpkg(&root).args(["--purge", "mcsd"]));
    assert!(!conf.exists());
}

/// Each HSM drop-in the package documents merges into the unit with no warning.
#[test]
fn the_hsm_drop_ins_merge_into_the_unit() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let unit = std::fs::read_to_string(format!("{src}/systemd/mcsd.service")).unwrap();
    for example in ["softhsm.conf", "pcie-hsm.conf", "network-hsm.conf"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mcsd.service"), unit.replace("/usr/bin/mcsd", bin("mcsd").to_str().unwrap()))
            .unwrap();
        let d = dir.path().join("mcsd.service.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(format!("{src}/systemd/examples/{example}"), d.join(example)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no", "mcsd.service"])
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{example}: {text}");
        assert!(!text.contains(example) && !text.contains("mcsd.service:"), "{example}: {text}");
    }
    let softhsm = std::fs::read_to_string(format!("{src}/systemd/examples/softhsm.conf")).unwrap();
    assert!(
        softhsm.contains("SupplementaryGroups=softhsm") && softhsm.contains("ReadWritePaths=/var/lib/softhsm/tokens")
    );
}
