//! Issue 2: the binary starts, finds libtorch, reports itself, and fails clearly without it.

use pt_tests::*;

#[test]
fn doctor_reports_versions_and_plugins() {
    let pt = Pt::new();
    let out = pt.ok(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("doctor --json prints JSON");
    assert_eq!(v["tch_version"], "0.24.0");
    assert!(v["libtorch_version"].as_str().unwrap_or("").starts_with("2.11.0"), "{v}");
    assert!(v["threads"].as_i64().unwrap_or(0) >= 1);
    let names: Vec<&str> = v["plugins"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"mlm"), "the plugin built next to pt is found: {names:?}");
    // The human form names the same facts.
    let text = pt.ok(&["doctor"]);
    assert!(text.contains("libtorch 2.11.0") && text.contains("plugin search path"), "{text}");
}

#[test]
fn libtorch_cuda_is_forced_into_the_process() {
    // --as-needed drops libtorch_cuda.so from the binary's NEEDED entries, so pt loads it itself
    // at start-up; on this (GPU-less) machine it must still load, or CUDA would silently be off
    // on a GPU machine.
    let v: serde_json::Value = serde_json::from_str(&Pt::new().ok(&["doctor", "--json"])).unwrap();
    assert_eq!(v["libtorch_cuda"]["loaded"], true, "{}", v["libtorch_cuda"]);
    // The engine links libtorch (NEEDED) with an rpath, so no LD_LIBRARY_PATH is needed; the
    // launcher links nothing of libtorch, so a missing one is its clear message, not a loader error.
    let dynamic = |bin: &std::path::Path| {
        let out =
            std::process::Command::new("readelf").arg("-d").arg(bin).output().expect("readelf (binutils) is installed");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let engine = dynamic(&release_dir().join("pt-engine"));
    assert!(engine.contains("[libtorch_cpu.so]") && engine.contains("RUNPATH"), "{engine}");
    let launcher = dynamic(&pt_bin());
    assert!(!launcher.contains("libtorch"), "{launcher}");
}

#[test]
fn tensor_op_runs_through_tch() {
    // doctor computes [1,2,3]·[4,5,6] with libtorch.
    let v: serde_json::Value = serde_json::from_str(&Pt::new().ok(&["doctor", "--json"])).unwrap();
    assert_eq!(v["tensor_check"], 32.0, "{v}");
}

#[test]
fn missing_libtorch_is_one_clear_line() {
    let pt = Pt::new();
    let out = pt.cmd().args(["doctor"]).env("LIBTORCH", "/nonexistent/libtorch").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("libtorch not found") && err.contains("scripts/setup.sh"), "{err}");
    // Every command, not only doctor.
    let out = pt.cmd().args(["plugin", "list"]).env("LIBTORCH", "/nonexistent/libtorch").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("libtorch not found"));
}

#[test]
fn wrong_libtorch_version_is_one_clear_line() {
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fake.path().join("lib")).unwrap();
    std::fs::write(fake.path().join("lib/libtorch_cpu.so"), b"").unwrap();
    std::fs::write(fake.path().join("version.py"), "__version__ = '2.10.0+cpu'\n").unwrap();
    let out = Pt::new().cmd().args(["doctor"]).env("LIBTORCH", fake.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("version 2.10.0+cpu") && err.contains("needs 2.11.0"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
