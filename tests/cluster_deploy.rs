//! The deployment manifests agree with the code: the ConfigMap's config file is accepted by
//! the real config loader, the container's arguments by the real CLI, and the ClusterRole
//! grants exactly what the Kubernetes API source reads. (`scripts/check-deploy.sh` validates
//! the rendered manifests against the Kubernetes schemas and our resource guidance.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use rightsizer::config::{Cli, Settings};

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/base")
        .join(name)
}

fn yaml_docs(name: &str) -> Vec<yaml_serde::Value> {
    let text = std::fs::read_to_string(deploy(name)).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn strings(v: &yaml_serde::Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_configmap_config_is_accepted_by_the_config_loader() {
    let path = deploy("config.toml");
    let cli =
        Cli::try_parse_from(["rightsizer", "--config", path.to_str().unwrap(), "analyze"]).unwrap();
    let settings = Settings::resolve(&cli.global).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.cluster, "production");
    assert_eq!(
        settings.prometheus.expect("prometheus_url is set").url,
        "http://prometheus-operated.monitoring.svc:9090"
    );
    assert_eq!(settings.collector.interval.as_secs(), 600);
}

#[test]
fn the_container_arguments_are_accepted_by_the_cli() {
    let docs = yaml_docs("deployment.yaml");
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["rightsizer".to_string()];
    argv.extend(strings(&container["args"]));
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(
        cli.global.config.as_deref(),
        Some(std::path::Path::new("/etc/rightsizer/config.toml"))
    );
}

#[test]
fn the_cluster_role_grants_exactly_what_the_source_reads() {
    let docs = yaml_docs("rbac.yaml");
    let role = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ClusterRole"))
        .unwrap();
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        assert_eq!(
            strings(&rule["verbs"]),
            ["get", "list", "watch"],
            "read-only"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert(format!("{group} {resource}"));
            }
        }
    }
    // `apps/v1 deployments` → `apps deployments`.
    let read: BTreeSet<String> = rightsizer::cluster::watched_resources()
        .iter()
        .map(|r| {
            let (group_version, plural) = r.split_once(' ').unwrap();
            let group = group_version.split_once('/').map_or("", |(g, _)| g);
            format!("{group} {plural}")
        })
        .collect();
    assert_eq!(granted, read);
}
