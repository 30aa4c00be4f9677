//! The deployment and CI files, checked without a container engine: the local stack's
//! listeners, health checks and start order, its Redis cache, the image's health check and
//! user, and the GitHub workflow against `.ci/run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(root().join("deploy/local/compose.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn service<'a>(c: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &c["services"][name];
    assert!(!s.is_badvalue(), "no service '{name}'");
    s
}

fn env(s: &Yaml, key: &str) -> String {
    match &s["environment"][key] {
        Yaml::String(v) => v.clone(),
        Yaml::Integer(v) => v.to_string(),
        other => panic!("{key}: {other:?}"),
    }
}

/// `NAME://host:port,...` as name → (host, port).
fn listeners(value: &str) -> BTreeMap<String, (String, u16)> {
    value
        .split(',')
        .map(|l| {
            let (name, addr) = l.split_once("://").unwrap();
            let (host, port) = addr.rsplit_once(':').unwrap();
            (name.to_string(), (host.to_string(), port.parse().unwrap()))
        })
        .collect()
}

/// `depends_on` of a service as name → condition.
fn depends(s: &Yaml) -> BTreeMap<String, String> {
    s["depends_on"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v["condition"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kafka_runs_in_kraft_mode_without_zookeeper() {
    let c = compose();
    let services = c["services"].as_hash().unwrap();
    assert!(
        services
            .keys()
            .all(|k| !k.as_str().unwrap().contains("zookeeper"))
    );
    let kafka = service(&c, "kafka");
    assert!(env(kafka, "KAFKA_PROCESS_ROLES").contains("broker"));
    assert!(env(kafka, "KAFKA_PROCESS_ROLES").contains("controller"));
    assert!(
        kafka["environment"]["KAFKA_ZOOKEEPER_CONNECT"].is_badvalue(),
        "no ZooKeeper"
    );
    assert_eq!(env(kafka, "KAFKA_AUTO_CREATE_TOPICS_ENABLE"), "false");
}

#[test]
fn each_listener_is_advertised_where_its_clients_reach_it() {
    let c = compose();
    let kafka = service(&c, "kafka");
    let bound = listeners(&env(kafka, "KAFKA_LISTENERS"));
    let advertised = listeners(&env(kafka, "KAFKA_ADVERTISED_LISTENERS"));
    // Containers use kafka:9092, the host localhost:29092 (the pair the field notes found
    // reversed).
    assert_eq!(advertised["PLAINTEXT"], ("kafka".to_string(), 9092));
    assert_eq!(
        advertised["PLAINTEXT_HOST"],
        ("localhost".to_string(), 29092)
    );
    for (name, (_, port)) in &advertised {
        assert_eq!(
            bound[name].1, *port,
            "{name} is advertised on the port it listens on"
        );
    }
    let ports: Vec<&str> = kafka["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        ports,
        ["29092:29092"],
        "only the host listener is published"
    );
    let map = env(kafka, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP");
    for name in bound.keys() {
        assert!(map.contains(&format!("{name}:")), "{name} has a protocol");
    }
    let controller = env(kafka, "KAFKA_CONTROLLER_LISTENER_NAMES");
    assert!(bound.contains_key(&controller) && !advertised.contains_key(&controller));
    // Every service of the pipeline connects through the container listener.
    for name in ["topics", "pipeline", "replay"] {
        assert_eq!(
            env(service(&c, name), "KAFKA_BOOTSTRAP_SERVERS"),
            "kafka:9092",
            "{name}"
        );
    }
}

#[test]
fn services_start_in_order_behind_health_checks() {
    let c = compose();
    let kafka = service(&c, "kafka");
    assert!(
        kafka["healthcheck"]["test"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("kafka:9092")),
        "Kafka's health check talks to the broker"
    );
    let topics = service(&c, "topics");
    assert_eq!(topics["command"][0].as_str(), Some("topics"));
    assert_eq!(topics["command"][1].as_str(), Some("create"));
    assert_eq!(depends(topics)["kafka"], "service_healthy");
    assert_eq!(topics["restart"].as_str(), Some("no"));

    let pipeline = service(&c, "pipeline");
    let d = depends(pipeline);
    assert_eq!(d["kafka"], "service_healthy");
    assert_eq!(d["topics"], "service_completed_successfully");
    let test: Vec<&str> = pipeline["healthcheck"]["test"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(test, ["CMD", "eeg-pipeline", "healthcheck"]);

    let replay = service(&c, "replay");
    let d = depends(replay);
    assert_eq!(d["topics"], "service_completed_successfully");
    assert_eq!(d["pipeline"], "service_healthy");
    let fixture = replay["command"][1].as_str().unwrap();
    let name = fixture.rsplit('/').next().unwrap();
    assert!(root().join("fixtures").join(name).exists(), "{fixture}");
}

#[test]
fn the_pipeline_gets_a_healthy_redis_as_its_cache() {
    let c = compose();
    let redis = service(&c, "redis");
    let image = redis["image"].as_str().unwrap();
    assert!(
        image == "redis:7" || image.starts_with("redis:7."),
        "{image}"
    );
    let test: Vec<&str> = redis["healthcheck"]["test"]
        .as_vec()
        .expect("Redis has a health check")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(test[0], "CMD");
    assert!(
        test.contains(&"redis-cli") && test.contains(&"ping"),
        "{test:?}"
    );
    // A cache of what Kafka holds: nothing on disk.
    let command: Vec<&str> = redis["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        command.windows(2).any(|w| w == ["--appendonly", "no"]),
        "{command:?}"
    );
    assert!(
        command.windows(2).any(|w| w == ["--save", ""]),
        "{command:?}"
    );
    // Redis listens on its default port, since the command sets no other.
    assert!(!command.contains(&"--port"), "{command:?}");

    let pipeline = service(&c, "pipeline");
    let url = env(pipeline, "REDIS_URL");
    let addr = url
        .strip_prefix("redis://")
        .expect("redis://, no TLS locally");
    let (host, port) = addr.rsplit_once(':').unwrap();
    assert!(
        host == "redis" || redis["hostname"].as_str() == Some(host),
        "REDIS_URL {url} names the redis service"
    );
    assert_eq!(port.parse::<u16>().unwrap(), 6379, "{url}");
    assert_eq!(
        depends(pipeline).get("redis").map(String::as_str),
        Some("service_healthy"),
        "the pipeline starts once Redis answers"
    );
    // Only the pipeline uses the cache.
    for name in ["topics", "replay"] {
        assert!(
            service(&c, name)["environment"]["REDIS_URL"].is_badvalue(),
            "{name}"
        );
    }
}

#[test]
fn the_image_checks_its_own_health_and_runs_unprivileged() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let joined = lines.join("\n");
    assert!(joined.contains("CMD [\"eeg-pipeline\", \"healthcheck\"]"));
    assert!(!joined.contains("curl") && !joined.contains("wget"));
    let runtime = joined.rsplit("\nFROM ").next().unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets a user");
    assert_ne!(user.trim(), "root");
    assert_ne!(user.trim(), "0");
    assert!(runtime.contains("ca-certificates"));
    // The service image signs MSK IAM tokens and is built fully optimised.
    let build = lines
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("--features msk-iam") && build.contains("--profile dist"),
        "{build}"
    );
    assert!(joined.contains("COPY --from=build /src/target/dist/eeg-pipeline"));
}

#[test]
fn the_github_workflow_runs_what_ci_runs() {
    let text = std::fs::read_to_string(root().join(".github/workflows/ci.yml")).unwrap();
    let workflow = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let steps = workflow["jobs"]["ci"]["steps"].as_vec().expect("steps");
    // The workflow runs .ci/run itself, and nothing else of its own: they cannot drift.
    let commands: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert_eq!(commands, [".ci/run"], "the workflow's own commands");
    let run_step = steps.iter().find(|s| s["run"].as_str().is_some()).unwrap();
    let env = &run_step["env"];
    assert!(
        env["CHROMIUM"].as_str().is_some(),
        "a browser for the pages"
    );
    assert!(env["PERF_GATE_BASE"].as_str().is_some(), "the gate's base");
    // .ci/run does every step CI needs, and reads the settings the workflow passes.
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    for wanted in [
        "cargo fmt --all -- --check",
        "cargo clippy --workspace --all-targets --locked --features msk-iam -- -D warnings",
        "cargo clippy --locked --bin eeg-pipeline -- -D warnings",
        "scripts/broker install",
        "redis-server redis-tools",
        "scripts/redis start --port",
        "scripts/redis cluster --ports",
        "--tls",
        "packages+=(chromium)",
        "cargo test --workspace --release --locked --features msk-iam",
        "--features sim-canary --test sim",
        "cargo bench --workspace --no-run --locked",
        "valgrind",
        "scripts/perf-gate",
        "--self-check",
        "${CHROMIUM:-}",
        "${PERF_GATE_BASE:-}",
    ] {
        assert!(ci.contains(wanted), ".ci/run lacks '{wanted}'");
    }
    // The toolchain is the project's.
    let toolchain = steps
        .iter()
        .find_map(|s| s["with"]["toolchain"].as_str())
        .expect("a pinned toolchain");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("rust-version = \"{toolchain}\"")),
        "toolchain {toolchain}"
    );
}
