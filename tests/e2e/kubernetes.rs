//! deploy/: the Kubernetes manifests against the Kubernetes schemas and the
//! seed's scaling numbers, Alertmanager's routing by severity, and
//! deploy/kubernetes/blue-green.sh's decisions against two real ledgers over
//! one PostgreSQL with a proxy standing in for the Service.

use crate::harness::*;
use aiaudit_testpg::TempPostgres;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` runs; under CI a missing tool fails the test.
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install {tool} (.ci/run)"
        );
        skipped(&format!("{tool} is not installed"));
    }
    ok
}

/// Every document of a YAML file, as JSON (PyYAML, which .ci/run has).
fn yaml(path: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(repo().join(path))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

const MULTI_NODE: [&str; 8] = [
    "deploy/kubernetes/postgres/config.yaml",
    "deploy/kubernetes/postgres/deployment-blue.yaml",
    "deploy/kubernetes/postgres/deployment-green.yaml",
    "deploy/kubernetes/postgres/services.yaml",
    "deploy/kubernetes/postgres/pdb.yaml",
    "deploy/kubernetes/postgres/hpa.yaml",
    "deploy/kubernetes/postgres/networkpolicy.yaml",
    "deploy/kubernetes/postgres/cronjob-validate.yaml",
];

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    if !have("kubernetes-validate", &["--version"]) {
        return;
    }
    let mut files: Vec<&str> = MULTI_NODE.to_vec();
    files.push("deploy/kubernetes/aiaudit.yaml");
    files.push("deploy/kubernetes/postgres/prometheus-adapter.yaml");
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files.iter().map(|f| repo().join(f)))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // Each manifest was checked (only the Prometheus Operator's
    // ServiceMonitor has no schema there).
    assert_eq!(text.matches(" passed for resource ").count(), 15, "{text}");
    // And the check bites: a misspelt field of the autoscaler is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("hpa.yaml");
    let hpa = std::fs::read_to_string(repo().join("deploy/kubernetes/postgres/hpa.yaml")).unwrap();
    std::fs::write(&bad, hpa.replace("maxReplicas", "maximumReplicas")).unwrap();
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The seed's numbers: 3..100 instances, grow above 400 ms p95 or 2 %
/// errors, shrink under 100 ms and 0.5 %; the autoscaler reads the metric
/// the adapter serves from the rule Prometheus records; a PDB per slot;
/// probes, drain time and secrets as the ledger needs them.
#[test]
fn the_multi_node_manifests_carry_the_seeds_scaling_policy() {
    let docs: Vec<Value> = MULTI_NODE.iter().flat_map(|f| yaml(f)).collect();
    let hpa = kind(&docs, "HorizontalPodAutoscaler", "aiaudit");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 100);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "aiaudit-blue");
    let metric = &hpa["spec"]["metrics"][0]["external"];
    assert_eq!(metric["target"], json!({"type": "Value", "value": "1"}));
    assert!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 300)
    );

    // The adapter serves that metric from aiaudit:replica_ratio...
    let adapter = &yaml("deploy/kubernetes/postgres/prometheus-adapter.yaml")[0];
    let rules: Value = {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.yaml");
        std::fs::write(&f, adapter["data"]["config.yaml"].as_str().unwrap()).unwrap();
        yaml(f.to_str().unwrap()).remove(0)
    };
    let rule = &rules["externalRules"][0];
    assert_eq!(rule["name"]["as"], metric["metric"]["name"]);
    assert!(rule["seriesQuery"]
        .as_str()
        .unwrap()
        .contains("aiaudit:replica_ratio"));
    // ...which Prometheus records from the seed's thresholds (their
    // behaviour is tested by promtool in deploy/prometheus/alerts_test.yml).
    let groups = &yaml("deploy/prometheus/alerts.yml")[0]["groups"];
    let recorded: HashMap<String, String> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| Some((r["record"].as_str()?.into(), r["expr"].as_str()?.into())))
        .collect();
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let up = squeeze(&recorded["aiaudit:scale_up"]);
    assert!(
        up.contains("p95_5m>bool0.4") && up.contains("rate5m>bool0.02"),
        "{up}"
    );
    let down = squeeze(&recorded["aiaudit:scale_down"]);
    assert!(
        down.contains("p95_5m<bool0.1") && down.contains("rate5m<bool0.005"),
        "{down}"
    );
    assert!(recorded.contains_key("aiaudit:replica_ratio"));

    // Blue and green are the same Deployment but for their slot.
    let blue = kind(&docs, "Deployment", "aiaudit-blue");
    let green = kind(&docs, "Deployment", "aiaudit-green");
    let as_blue = serde_json::to_string(green)
        .unwrap()
        .replace("aiaudit-green", "aiaudit-blue")
        .replace("\"green\"", "\"blue\"");
    let green_as_blue: Value = serde_json::from_str(&as_blue).unwrap();
    assert_eq!(&green_as_blue, blue);
    // No replica count to reset on a re-apply: the autoscaler's minimum (3)
    // holds the live slot, blue-green.sh the idle one.
    assert!(blue["spec"]["replicas"].is_null() && green["spec"]["replicas"].is_null());

    let pod = &blue["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Drain: the longest request (60 s by default) plus the preStop pause.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    assert!(grace >= 60 + pause, "{grace}");
    let from_secret: HashMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?,
                e["valueFrom"]["secretKeyRef"]["name"].as_str()?,
            ))
        })
        .collect();
    for var in ["AIAUDIT_STORAGE", "AIAUDIT_LOG_KEY", "AIAUDIT_MASTER_KEY"] {
        assert_eq!(from_secret.get(var), Some(&"aiaudit-secrets"), "{var}");
    }
    assert!(c["resources"]["requests"]["memory"].is_string());

    // A disruption budget per slot, selecting that slot's pods.
    for slot in ["blue", "green"] {
        let pdb = kind(&docs, "PodDisruptionBudget", &format!("aiaudit-{slot}"));
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"]["slot"], slot);
    }
    // The Service starts on blue; the NetworkPolicy opens only 7381.
    let svc = kind(&docs, "Service", "aiaudit");
    assert_eq!(svc["spec"]["selector"]["slot"], "blue");
    let np = kind(&docs, "NetworkPolicy", "aiaudit");
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": 7381}])
    );

    // The daily checks run with the admin token and the pinned key.
    let job = kind(&docs, "CronJob", "aiaudit-daily-validate");
    let c = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0], "validate");
    assert_eq!(c["env"][0]["name"], "AIAUDIT_TOKEN");
    assert_eq!(
        c["env"][0]["valueFrom"]["secretKeyRef"]["key"],
        "admin-token"
    );

    // The ledger's config in the ConfigMap is one `serve` takes.
    let config = kind(&docs, "ConfigMap", "aiaudit-config");
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("aiaudit.toml");
    std::fs::write(&toml, config["data"]["aiaudit.toml"].as_str().unwrap()).unwrap();
    let out = aiaudit(&["validate", "--json", "--config", toml.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checks"][0]["check"], "configuration");
    assert_eq!(report["checks"][0]["status"], "ok", "{report}");
}

/// Every alert carries one of the seed's four severities, and Alertmanager
/// routes each as the seed says: critical pages at once, high within 15
/// minutes, medium within the hour, low on the next business day; the
/// ledger's incident webhook takes critical, high and medium.
#[test]
fn alertmanager_routes_every_severity_as_the_seed_says() {
    let config = repo().join("deploy/alertmanager/alertmanager.yml");
    let groups = &yaml("deploy/prometheus/alerts.yml")[0]["groups"];
    let severities: Vec<String> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter(|r| r["alert"].is_string())
        // An alert without its own severity takes the incident's, which
        // is one of the same four (aiaudit-incident's severities).
        .filter(|r| {
            r["labels"]["severity"].is_string() || {
                let expr = r["expr"].as_str().unwrap();
                assert!(
                    expr.contains("by (severity)"),
                    "{} has no severity",
                    r["alert"]
                );
                false
            }
        })
        .map(|r| r["labels"]["severity"].as_str().unwrap().to_string())
        .collect();
    assert!(severities.len() >= 20, "{severities:?}");
    for s in &severities {
        assert!(
            ["critical", "high", "medium", "low"].contains(&s.as_str()),
            "{s}"
        );
    }

    let am = &yaml("deploy/alertmanager/alertmanager.yml")[0];
    let route_of = |severity: &str| {
        am["route"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["matchers"][0] == format!("severity=\"{severity}\""))
            .unwrap_or_else(|| panic!("no route for {severity}"))
            .clone()
    };
    assert_eq!(route_of("critical")["group_wait"], "0s");
    assert_eq!(route_of("high")["repeat_interval"], "15m");
    assert_eq!(route_of("medium")["repeat_interval"], "1h");
    assert_eq!(
        route_of("low")["active_time_intervals"],
        json!(["business-hours"])
    );
    let incidents = am["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "aiaudit-incidents")
        .unwrap();
    assert!(incidents["webhook_configs"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/v1/incidents/alertmanager"));

    if !have("amtool", &["--version"]) {
        return;
    }
    let out = Command::new("amtool")
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let route = |labels: &str| {
        let out = Command::new("amtool")
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .arg(labels)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(route("severity=critical"), "aiaudit-incidents,pager");
    assert_eq!(route("severity=high"), "aiaudit-incidents,oncall");
    assert_eq!(route("severity=medium"), "aiaudit-incidents,team-chat");
    assert_eq!(route("severity=low"), "tickets");
}

/// A loopback proxy standing in for the Kubernetes Service: each new
/// connection goes to the ledger of the slot named in the switch file.
struct SlotProxy {
    url: String,
    slots: Arc<Mutex<HashMap<String, u16>>>,
}

impl SlotProxy {
    fn start(switch_file: PathBuf) -> SlotProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let slots: Arc<Mutex<HashMap<String, u16>>> = Arc::default();
        let map = slots.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let slot = std::fs::read_to_string(&switch_file).unwrap_or_default();
                let Some(port) = map.lock().unwrap().get(slot.trim()).copied() else {
                    continue;
                };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        SlotProxy { url, slots }
    }

    fn route(&self, slot: &str, to: &Server) {
        let port = to.url.rsplit(':').next().unwrap().parse().unwrap();
        self.slots.lock().unwrap().insert(slot.into(), port);
    }
}

/// Runs `blue-green.sh` on the local platform: (exit code, what it said).
fn blue_green(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("bash")
        .arg(repo().join("deploy/kubernetes/blue-green.sh"))
        .args(args)
        .env("AIAUDIT_BG_PLATFORM", "local")
        .env("AIAUDIT_BIN", BIN)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

#[test]
fn blue_green_switches_only_after_validation_and_rolls_back_on_failure() {
    if !have("curl", &["--version"]) {
        return;
    }
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let storage = ["--storage", pg.url.as_str()];
    // Blue makes the log's identity; green is another node of the same log
    // (the key from the environment, as the manifests hand it over).
    let blue = Server::start_with(&root.path().join("blue"), &storage);
    let log_key = std::fs::read_to_string(root.path().join("blue/log.key")).unwrap();
    let green_dir = root.path().join("green");
    std::fs::create_dir_all(&green_dir).unwrap();
    // Without the log's master key a joining node does not start (it used
    // to make a master key of its own while the keyring was still empty,
    // then failed every append once blue had sealed with the real one).
    let out = Command::new(BIN)
        .args(["serve", "--data-dir", green_dir.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(storage)
        .env("AIAUDIT_LOG_KEY", log_key.trim())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("joins an existing shared log"), "{said}");
    assert!(!green_dir.join("master.key").exists());
    let master = std::fs::read_to_string(root.path().join("blue/master.key")).unwrap();
    let mut green = Server::start_env(
        &green_dir,
        free_port(),
        &storage,
        &[
            ("AIAUDIT_LOG_KEY", log_key.trim().to_string()),
            ("AIAUDIT_MASTER_KEY", master.trim().to_string()),
        ],
    );
    green.token = blue.token.clone();
    assert!(!green_dir.join("log.key").exists());
    // A green slot whose database URL went missing: it starts a fresh
    // embedded log of its own, healthy by every local measure.
    let stray = Server::start(&root.path().join("stray"));
    let events: Vec<Value> = (0..50).map(|i| event(&format!("bg-{i}"))).collect();
    blue.post_events(&events);
    blue.wait_size(50);

    let switch = root.path().join("service-slot");
    std::fs::write(&switch, "blue\n").unwrap();
    let proxy = SlotProxy::start(switch.clone());
    proxy.route("blue", &blue);
    let state = root.path().join("state");
    let base_env = |green_url: &str| {
        vec![
            ("AIAUDIT_BG_STATE", state.to_str().unwrap().to_string()),
            (
                "AIAUDIT_BG_SWITCH_FILE",
                switch.to_str().unwrap().to_string(),
            ),
            ("AIAUDIT_BG_SERVICE_URL", proxy.url.clone()),
            ("AIAUDIT_BG_BLUE_URL", blue.url.clone()),
            ("AIAUDIT_BG_GREEN_URL", green_url.to_string()),
            ("AIAUDIT_TOKEN", blue.token.clone()),
            // The decisions are under test, not this machine's speed.
            (
                "AIAUDIT_BG_VALIDATE",
                "--smoke-max-p95-ms 10000".to_string(),
            ),
        ]
    };
    let run = |args: &[&str], green_url: &str| {
        let env = base_env(green_url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, said) = blue_green(args, &env);
        // The transcript for docs/measurements/blue-green.md (--nocapture).
        println!("$ blue-green.sh {}\n{said}[exit {code}]\n", args.join(" "));
        (code, said)
    };
    let slot = || std::fs::read_to_string(&switch).unwrap().trim().to_string();

    // 1. The new slot is another log: refused before the switch.
    let (code, said) = run(&["deploy"], &stray.url);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("the new slot (green) before the switch: FAILED"),
        "{said}"
    );
    assert!(said.contains("the Service stays on blue"), "{said}");
    assert_eq!(slot(), "blue");
    assert!(!said.contains("switching the Service"), "{said}");

    // 2. Green is right, but the Service lands on the wrong pods after the
    //    switch: the post-switch validation fails and it switches back.
    proxy.route("green", &stray);
    let (code, said) = run(&["deploy"], &green.url);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("the new slot (green) before the switch: passed"),
        "{said}"
    );
    assert!(
        said.contains("the Service after the switch: FAILED"),
        "{said}"
    );
    assert!(said.contains("ROLLING BACK to blue"), "{said}");
    assert!(
        said.contains("the Service after the rollback: passed"),
        "{said}"
    );
    assert_eq!(slot(), "blue");

    // 3. All well: green serves, the log goes on through it.
    proxy.route("green", &green);
    let (code, said) = run(&["deploy"], &green.url);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("the Service after the switch: passed"),
        "{said}"
    );
    assert!(said.contains("writes format 5"), "{said}");
    assert_eq!(slot(), "green");
    let more: Vec<Value> = (50..60).map(|i| event(&format!("bg-{i}"))).collect();
    let answer: Value = client()
        .post(format!("{}/v1/events", proxy.url))
        .bearer_auth(&blue.token)
        .json(&more)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        answer["events"].as_array().map(Vec::len),
        Some(10),
        "{answer}"
    );
    blue.wait_size(60);

    // 4. And back, by hand, with the checkpoint seen so far still consistent.
    let (code, said) = run(&["rollback"], &green.url);
    assert_eq!(code, 0, "{said}");
    assert_eq!(slot(), "blue");
    assert!(said.contains("consistent with the saved size"), "{said}");
    drop(green);
}

/// Losing a region (docs/operations.md): three nodes over one PostgreSQL
/// back up to object storage in another region (moto standing in for it);
/// the whole region goes (nodes killed, database stopped); `aiaudit dr
/// drill` restores the other region's latest backup, serves and verifies it,
/// and measures RTO and RPO against the seed's 15 minutes and 1 hour. The
/// same drill while the region is alive also counts the events behind.
#[test]
fn losing_a_region_is_recovered_from_the_other_regions_backups_within_the_seeds_objectives() {
    let Some(moto) = crate::backup::Moto::start() else {
        return;
    };
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    moto.boto3("s3.create_bucket(Bucket='region-b')");
    let root = tempfile::tempdir().unwrap();
    let args = ["--storage", pg.url.as_str()];
    let first = root.path().join("node0");
    let nodes: Vec<Server> = (0..3)
        .map(|i| {
            let dir = root.path().join(format!("node{i}"));
            if i > 0 {
                copy_dir(&first, &dir);
            }
            Server::start_env(&dir, 0, &args, &moto.env())
        })
        .collect();
    for (n, node) in nodes.iter().enumerate() {
        let batch: Vec<Value> = (0..40).map(|i| event(&format!("r{n}-{i}"))).collect();
        node.post_events(&batch);
    }
    // Each node serves the checkpoint it last read from the database.
    for n in &nodes {
        n.wait_size(120);
    }
    // A backup to the other region, as the schedule takes them (its timing
    // is backup.rs's to test; here the size must be known).
    let out = Command::new(BIN)
        .args(["backup", "create", "--to", "s3://region-b/ledger", "--json"])
        .args(["--url", &nodes[1].url, "--token", &nodes[0].token])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    // Events logged after the backup: what a restore from it would lose.
    nodes[1].post_events(&[event("after-backup-1"), event("after-backup-2")]);
    for n in &nodes {
        n.wait_size(122);
    }

    let drill = |live: Option<&str>, vkey: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args(["dr", "drill", "--from", "s3://region-b/ledger", "--json"])
            .args(["--rto-objective", "15m", "--rpo-objective", "1h"])
            .args(["--vkey", vkey])
            .arg("--signing-key")
            .arg(first.join("log.key"))
            .arg("--master-key-file")
            .arg(first.join("master.key"))
            .envs(moto.env());
        if let Some(url) = live {
            cmd.args(["--url", url]);
        }
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                stdout(&out),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        println!("aiaudit dr drill (live: {live:?}): {report}");
        (out.status.success(), report)
    };
    let vkey = std::fs::read_to_string(first.join("log.vkey")).unwrap();
    let vkey = vkey.trim();
    // The monthly drill, the region alive: 2 events behind, consistent.
    let (ok, report) = drill(Some(&nodes[2].url), vkey);
    assert!(ok, "{report}");
    assert_eq!(report["live"]["consistent"], true);
    assert_eq!(report["rpo_events"], 2);
    assert_eq!(report["verification"]["ok"], true);
    assert_eq!(report["content_checked"], true);

    // The region is lost: every node and the database.
    for n in nodes {
        n.kill9();
    }
    pg.stop();
    let (ok, report) = drill(None, vkey);
    assert!(ok, "{report}");
    assert_eq!(report["restored"]["size"], 120, "{report}");
    assert_eq!(report["served"], true);
    assert_eq!(report["verification"]["ok"], true);
    assert_eq!(report["rto_met"], true);
    assert_eq!(report["rpo_met"], true);
    assert!(report["rto_seconds"].as_f64().unwrap() < 15.0 * 60.0);
    assert!(report["rpo_seconds"].as_f64().unwrap() < 3600.0);
    // A backup older than the objective allows misses it.
    let out = Command::new(BIN)
        .args(["dr", "drill", "--from", "s3://region-b/ledger", "--json"])
        .args(["--vkey", vkey, "--rpo-objective", "0s"])
        .envs(moto.env())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success());
    assert_eq!(report["rpo_met"], false, "{report}");
}
