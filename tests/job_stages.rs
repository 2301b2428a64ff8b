//! The test control plane's kwok stages for pods that finish (scripts/control-plane.sh,
//! `write_kwok_files`): a pod annotated `vigil-test/exit-code: "N"` ends, after
//! `vigil-test/run-seconds`, with exit code N, so the real Job controller marks its Job
//! Complete or Failed; a pod without it runs until deleted; and a container named
//! `vigil-log-<k>` serves its own log file, DIR/pod-logs/<k>.log.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::cluster::{self, Cluster};
use support::{apply_ok, condition, eventually, get_json};

const T: Duration = Duration::from_secs(60);

fn job_yaml(name: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {{{annotations}}}
    spec:
      restartPolicy: Never
      containers:
      - {{name: step, image: registry.invalid/step:1}}
"#
    )
}

/// Waits until the Job has condition `type_` = True; returns the Job.
fn wait_job(c: &Cluster, ns: &str, name: &str, type_: &str) -> Value {
    eventually(T, &format!("job {name} {type_}"), || {
        let job = get_json(c, ns, "job", name)?;
        (condition(&job, type_)?["status"] == "True").then_some(job)
    })
}

/// The one pod of Job `name`.
fn job_pod(c: &Cluster, ns: &str, name: &str) -> Value {
    let pods = c.kubectl_json(&["get", "pods", "-n", ns, "-l", &format!("job-name={name}")]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "pods of job {name}: {pods}");
    items[0].clone()
}

fn seconds(t: &Value) -> i64 {
    let s = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_second()
}

#[test]
fn exit_code_0_completes_the_job_after_its_run_seconds() {
    let c = cluster::shared();
    let ns = c.namespace("stages-ok");
    apply_ok(
        c,
        &ns,
        &job_yaml(
            "ok",
            r#"vigil-test/exit-code: "0", vigil-test/run-seconds: "3""#,
        ),
    );
    let job = wait_job(c, &ns, "ok", "Complete");
    assert_eq!(job["status"]["succeeded"], 1, "{job}");

    let pod = job_pod(c, &ns, "ok");
    assert_eq!(pod["status"]["phase"], "Succeeded", "{pod}");
    let term = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 0, "{pod}");
    assert_eq!(term["reason"], "Completed", "{pod}");
    // It ran for its run-seconds (timestamps have whole seconds).
    let ran = seconds(&term["finishedAt"]) - seconds(&term["startedAt"]);
    assert!((2..30).contains(&ran), "ran {ran}s: {pod}");
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn exit_code_3_fails_the_job_and_shows_on_the_container() {
    let c = cluster::shared();
    let ns = c.namespace("stages-fail");
    apply_ok(c, &ns, &job_yaml("bad", r#"vigil-test/exit-code: "3""#));
    let job = wait_job(c, &ns, "bad", "Failed");
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert_eq!(job["status"]["failed"], 1, "{job}");
    assert!(condition(&job, "Complete").is_none(), "{job}");

    let pod = job_pod(c, &ns, "bad");
    assert_eq!(pod["status"]["phase"], "Failed", "{pod}");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["name"], "step", "{pod}");
    assert_eq!(status["state"]["terminated"]["exitCode"], 3, "{pod}");
    assert_eq!(status["state"]["terminated"]["reason"], "Error", "{pod}");
    assert_eq!(status["ready"], false, "{pod}");
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_pod_without_an_exit_code_runs_until_deleted() {
    let c = cluster::shared();
    let ns = c.namespace("stages-run");
    apply_ok(c, &ns, &job_yaml("forever", ""));
    let pod = eventually(T, "the job's pod Running", || {
        let pods = c.kubectl_json(&["get", "pods", "-n", &ns, "-l", "job-name=forever"]);
        let pod = pods["items"].as_array()?.first()?.clone();
        (pod["status"]["phase"] == "Running").then_some(pod)
    });
    // Well past the 1 s an annotated pod would take.
    std::thread::sleep(Duration::from_secs(4));
    let still = job_pod(c, &ns, "forever");
    assert_eq!(still["status"]["phase"], "Running", "{still}");
    assert!(
        still["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{still}"
    );
    let job = get_json(c, &ns, "job", "forever").unwrap();
    assert_eq!(job["status"]["active"], 1, "{job}");
    assert!(condition(&job, "Complete").is_none(), "{job}");

    // Deleting it still works (kwok's pod-delete stage).
    let name = pod["metadata"]["name"].as_str().unwrap();
    c.kubectl_ok(&["delete", "pod", "-n", &ns, name, "--timeout=60s"]);
    assert!(
        !c.kubectl(&["get", "pod", "-n", &ns, name]).status.success(),
        "pod {name} still exists"
    );
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_vigil_log_container_serves_its_own_file() {
    let c = cluster::shared();
    let ns = c.namespace("stages-logs");
    apply_ok(
        c,
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: logger\nspec:\n  containers:\n  - {name: vigil-log-7, image: registry.invalid/a:1}\n  - {name: other, image: registry.invalid/b:1}\n",
    );
    eventually(T, "pod logger Running", || {
        let pod = get_json(c, &ns, "pod", "logger")?;
        (pod["status"]["phase"] == "Running").then_some(())
    });
    // The control plane's DIR holds the kubeconfig and the log files.
    let mine = format!("step output of {ns}");
    let theirs = format!("shared log line of {ns}");
    c.append_pod_log(Some(7), &[&format!("{mine} 1"), &format!("{mine} 2")]);
    c.append_pod_log(None, &[&theirs]);

    let out = c.kubectl_ok(&["logs", "-n", &ns, "logger", "-c", "vigil-log-7"]);
    assert!(
        out.contains(&format!("{mine} 1\n{mine} 2\n")),
        "own log file not served: {out}"
    );
    assert!(!out.contains(&theirs), "{out}");
    let other = c.kubectl_ok(&["logs", "-n", &ns, "logger", "-c", "other"]);
    assert!(other.contains(&theirs), "{other}");
    assert!(!other.contains(&mine), "{other}");
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
