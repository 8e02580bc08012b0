//! The deployment files reference only what the image and the binary provide: every
//! Kubernetes manifest and the compose file parse; every flag and `BANYAN_*` variable
//! they set is one `banyan core` or `banyan branch` accepts; ports, probe paths, the data
//! path and the user match `deploy/Dockerfile` and what the nodes serve; every node runs
//! with TLS, its certificates mounted read-only where `BANYAN_CERTS_DIR` points.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `banyan <command> --help`: the flags and the environment variables it accepts.
fn accepted(command: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = Command::new(banyan_tests::banyan_bin())
        .args([command, "--help"])
        .output()
        .expect("running banyan --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let words = |prefix: &str, end: &[char]| -> BTreeSet<String> {
        help.split(prefix)
            .skip(1)
            .filter_map(|rest| rest.split(end).next())
            .map(|name| format!("{prefix}{name}"))
            .collect()
    };
    let flags = words("--", &[' ', '<', '\n', ',', ']']);
    let env = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .map(str::to_owned)
        .collect();
    (flags, env)
}

/// What the image declares: exposed ports, the data volume, the user.
struct Image {
    ports: BTreeSet<u64>,
    volume: String,
    uid: u64,
}

fn image() -> Image {
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let line = |keyword: &str| {
        dockerfile
            .lines()
            .find(|l| l.starts_with(keyword))
            .unwrap_or_else(|| panic!("Dockerfile has no {keyword}"))
            .trim_start_matches(keyword)
            .trim()
            .to_owned()
    };
    Image {
        ports: line("EXPOSE")
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect(),
        volume: line("VOLUME")
            .trim_matches(|c| "[]\" ".contains(c))
            .to_owned(),
        uid: line("USER").split(':').next().unwrap().parse().unwrap(),
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Compose files share settings through `<<: *anchor`.
            value.apply_merge().unwrap();
            value
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Checks one container's settings against the binary and the image.
fn check_settings(
    place: &str,
    command: &str,
    flags: &[String],
    env: &[(String, String)],
    image: &Image,
) {
    assert!(
        command == "core" || command == "branch",
        "{place}: runs `banyan {command}`"
    );
    let (known_flags, known_env) = accepted(command);
    for flag in flags.iter().filter(|f| f.starts_with("--")) {
        assert!(
            known_flags.contains(flag),
            "{place}: banyan {command} has no {flag}"
        );
    }
    assert!(
        !flags.iter().any(|f| f == "--insecure")
            && !env.iter().any(|(name, _)| name == "BANYAN_INSECURE"),
        "{place}: runs --insecure"
    );
    for (name, value) in env {
        if name.starts_with("BANYAN_") {
            assert!(
                known_env.contains(name),
                "{place}: banyan {command} reads no {name}"
            );
        }
        match name.as_str() {
            "BANYAN_DATA_DIR" => assert_eq!(value, &image.volume, "{place}: data in the volume"),
            "BANYAN_LISTEN" | "BANYAN_HTTP" => assert!(
                image.ports.contains(&port_of(value)),
                "{place}: {name}={value} is not a port the image exposes"
            ),
            _ => {}
        }
    }
}

/// Where `BANYAN_CERTS_DIR` points.
fn certs_dir(place: &str, env: &[(String, String)]) -> String {
    env.iter()
        .find(|(name, _)| name == "BANYAN_CERTS_DIR")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| panic!("{place}: no BANYAN_CERTS_DIR"))
}

#[test]
fn t05_kubernetes_manifests_reference_only_what_the_image_provides() {
    let image = image();
    let dir = repo().join("deploy/k8s");
    let kustomization = &documents(&dir.join("kustomization.yaml"))[0];
    let mut kinds = Vec::new();
    let mut config_maps = std::collections::BTreeMap::new();
    let mut docs = Vec::new();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let file = dir.join(resource.as_str().unwrap());
        for doc in documents(&file) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            if kind == "ConfigMap" {
                let data: Vec<(String, String)> = doc["data"]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (str_of(k), str_of(v)))
                    .collect();
                config_maps.insert(str_of(&doc["metadata"]["name"]), data);
            }
            kinds.push(kind);
            docs.push(doc);
        }
    }
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind}");
    }
    let mut commands = BTreeSet::new();
    for set in docs.iter().filter(|d| d["kind"] == "StatefulSet") {
        let name = str_of(&set["metadata"]["name"]);
        let pod = &set["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(image.uid),
            "{name}: runs as the image's user"
        );
        assert!(
            set["spec"]["volumeClaimTemplates"].as_sequence().is_some(),
            "{name}: keeps its data on a volume claim"
        );
        for container in pod["containers"].as_sequence().unwrap() {
            let place = format!("{name}/{}", str_of(&container["name"]));
            let args: Vec<String> = container["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(str_of)
                .collect();
            let mut env = Vec::new();
            for from in container["envFrom"].as_sequence().into_iter().flatten() {
                let map = str_of(&from["configMapRef"]["name"]);
                env.extend(
                    config_maps
                        .get(&map)
                        .unwrap_or_else(|| panic!("{place}: no ConfigMap {map}"))
                        .clone(),
                );
            }
            for var in container["env"].as_sequence().into_iter().flatten() {
                if let Some(value) = var.get("value") {
                    env.push((str_of(&var["name"]), str_of(value)));
                }
            }
            check_settings(&place, &args[0], &args[1..], &env, &image);
            commands.insert(args[0].clone());
            let ports: Vec<(String, u64)> = container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| (str_of(&p["name"]), p["containerPort"].as_u64().unwrap()))
                .collect();
            for (_, port) in &ports {
                assert!(
                    image.ports.contains(port),
                    "{place}: port {port} not exposed"
                );
            }
            for probe in ["readinessProbe", "livenessProbe"] {
                let get = &container[probe]["httpGet"];
                let path = str_of(&get["path"]);
                assert!(
                    path == "/readyz" || path == "/healthz",
                    "{place}: {probe} {path}"
                );
                let port = str_of(&get["port"]);
                let number = ports
                    .iter()
                    .find(|(n, _)| *n == port)
                    .map(|(_, p)| *p)
                    .unwrap_or_else(|| port.parse().unwrap());
                let http = env
                    .iter()
                    .find(|(n, _)| n == "BANYAN_HTTP")
                    .map(|(_, v)| port_of(v));
                assert_eq!(Some(number), http, "{place}: {probe} on the HTTP port");
            }
            let certs = certs_dir(&place, &env);
            let secrets: BTreeSet<String> = pod["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|volume| volume.get("secret").is_some())
                .map(|volume| str_of(&volume["name"]))
                .collect();
            let mut paths = BTreeSet::new();
            for mount in container["volumeMounts"].as_sequence().unwrap() {
                let path = str_of(&mount["mountPath"]);
                if secrets.contains(&str_of(&mount["name"])) {
                    assert_eq!(path, certs, "{place}: the certificates' Secret");
                    assert_eq!(
                        mount["readOnly"].as_bool(),
                        Some(true),
                        "{place}: certificates mounted read-only"
                    );
                } else {
                    assert_eq!(path, image.volume, "{place}: mount path");
                }
                paths.insert(path);
            }
            assert_eq!(
                paths,
                BTreeSet::from([image.volume.clone(), certs]),
                "{place}: mounts its data and its certificates"
            );
        }
    }
    assert_eq!(
        commands,
        BTreeSet::from(["branch".to_owned(), "core".to_owned()]),
        "a core and branches"
    );
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] == "None"),
        "a headless Service for the members"
    );
}

#[test]
fn t05_the_compose_file_references_only_what_the_image_provides() {
    let image = image();
    let compose = &documents(&repo().join("deploy/compose.yaml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    assert_eq!(services.len(), 5, "3 core nodes and 2 branches");
    for (name, service) in services {
        let place = str_of(name);
        let command: Vec<String> = service["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        let env: Vec<(String, String)> = service["environment"]
            .as_mapping()
            .map(|m| m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect())
            .unwrap_or_default();
        check_settings(&place, &command[0], &command[1..], &env, &image);
        let certs = certs_dir(&place, &env);
        let mut paths = BTreeSet::new();
        for volume in service["volumes"].as_sequence().unwrap() {
            // `name:path` is the data volume; the certificates are a read-only bind mount
            // in the long syntax.
            let path = match volume {
                Value::String(short) => {
                    let path = short.split_once(':').unwrap().1.to_owned();
                    assert_eq!(path, image.volume, "{place}: volume path");
                    path
                }
                long => {
                    let path = str_of(&long["target"]);
                    assert_eq!(path, certs, "{place}: the certificates' mount");
                    assert_eq!(
                        long["read_only"].as_bool(),
                        Some(true),
                        "{place}: certificates mounted read-only"
                    );
                    path
                }
            };
            paths.insert(path);
        }
        assert_eq!(
            paths,
            BTreeSet::from([image.volume.clone(), certs]),
            "{place}: mounts its data and its certificates"
        );
        for port in service["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{place}: no ports in {service:?}"))
        {
            let container_port = str_of(port).rsplit(':').next().unwrap().parse().unwrap();
            assert!(
                image.ports.contains(&container_port),
                "{place}: port {container_port}"
            );
        }
    }
}
