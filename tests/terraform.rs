//! deploy/aws, the Terraform module of the ECS service, read with hcl-rs: no Terraform, no
//! provider, no AWS account. Values that come from variables are checked at their defaults;
//! the module's preconditions hold the same rules for other values.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

use hcl::expr::{Expression, ObjectKey, Operation, TraversalOperator};
use hcl::{Block, Body};
use std::collections::BTreeSet;

/// Every variable the service reads (docs/service.md), plus those of its runtime.
const SERVICE_ENV: &[&str] = &[
    "EEG_CONFIG",
    "EEG_DLQ_TOPIC",
    "EEG_PARTITION_BUFFER_KIB",
    "EEG_PARTITION_QUEUE",
    "EEG_PROCESSED_TOPIC",
    "EEG_RAW_TOPIC",
    "EEG_STATE_TOPIC",
    "EEG_STATUS_INTERVAL_S",
    "EEG_TRIGGERS_TOPIC",
    "HTTP_ADDR",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CONNECT_TIMEOUT_S",
    "KAFKA_GROUP_ID",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SSL_CA_LOCATION",
    "REDIS_CLUSTER",
    "REDIS_PASSWORD",
    "REDIS_REQUIRED",
    "REDIS_URL",
    "REDIS_USERNAME",
    "SESSION_IDLE_S",
    "SHUTDOWN_TIMEOUT_S",
    "AWS_REGION",
    "LOG_FORMAT",
    "RUST_LOG",
];
const SASL_CREDENTIALS: [&str; 2] = ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"];
const REDIS_PASSWORD: &str = "REDIS_PASSWORD";

/// Every `.tf` file of deploy/aws, parsed.
fn terraform() -> Vec<Body> {
    let dir = root().join("deploy/aws");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf file in {}", dir.display());
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

/// The top-level blocks `kind "labels[0]" "labels[1]"`.
fn tf_blocks<'a>(tf: &'a [Body], kind: &str, labels: &[&str]) -> Vec<&'a Block> {
    tf.iter()
        .flat_map(|b| b.blocks())
        .filter(|b| b.identifier.as_str() == kind)
        .filter(|b| {
            b.labels.len() >= labels.len()
                && labels
                    .iter()
                    .zip(&b.labels)
                    .all(|(l, bl)| bl.as_str() == *l)
        })
        .collect()
}

fn tf_block<'a>(tf: &'a [Body], kind: &str, labels: &[&str]) -> &'a Block {
    let found = tf_blocks(tf, kind, labels);
    assert_eq!(found.len(), 1, "{kind} {labels:?}");
    found[0]
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn nested<'a>(body: &'a Body, kind: &str) -> Vec<&'a Block> {
    body.blocks()
        .filter(|b| b.identifier.as_str() == kind)
        .collect()
}

/// `root.a.b...` as ("root", ["a", "b", ...]), indexes skipped.
fn reference(expr: &Expression) -> Option<(&str, Vec<&str>)> {
    let Expression::Traversal(t) = expr else {
        return None;
    };
    let Expression::Variable(root) = &t.expr else {
        return None;
    };
    let path = t
        .operators
        .iter()
        .filter_map(|op| match op {
            TraversalOperator::GetAttr(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    Some((root.as_str(), path))
}

/// `var.NAME` → NAME.
fn var_name(expr: &Expression) -> Option<&str> {
    match reference(expr)? {
        ("var", path) => path.first().copied(),
        _ => None,
    }
}

fn local<'a>(tf: &'a [Body], name: &str) -> &'a Expression {
    tf_blocks(tf, "locals", &[])
        .into_iter()
        .find_map(|b| attr(&b.body, name))
        .unwrap_or_else(|| panic!("no local '{name}'"))
}

/// `local.NAME` is replaced by its definition, once.
fn resolve<'a>(tf: &'a [Body], expr: &'a Expression) -> &'a Expression {
    match reference(expr) {
        Some(("local", path)) if path.len() == 1 => local(tf, path[0]),
        _ => expr,
    }
}

fn variable_default<'a>(tf: &'a [Body], name: &str) -> &'a Expression {
    let v = tf_block(tf, "variable", &[name]);
    attr(&v.body, "default").unwrap_or_else(|| panic!("variable '{name}' has no default"))
}

/// The default of `var.NAME`, or of `var.NAME.FIELD`: the field of the default object, or
/// the default of `FIELD = optional(TYPE, DEFAULT)` in the variable's object type.
fn var_default<'a>(tf: &'a [Body], expr: &Expression) -> Option<&'a Expression> {
    let ("var", path) = reference(expr)? else {
        return None;
    };
    let default = variable_default(tf, path[0]);
    match path.get(1) {
        None => Some(default),
        Some(key) => fields(default)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .or_else(|| {
                let v = tf_block(tf, "variable", &[path[0]]);
                let Some(Expression::FuncCall(object)) = attr(&v.body, "type") else {
                    return None;
                };
                let (_, field_type) = fields(object.args.first()?)
                    .into_iter()
                    .find(|(k, _)| k == key)?;
                match field_type {
                    Expression::FuncCall(f) if f.name.name.as_str() == "optional" => f.args.get(1),
                    _ => None,
                }
            }),
    }
}

/// A number literal, or a variable's default.
fn number(tf: &[Body], expr: &Expression) -> f64 {
    match expr {
        Expression::Number(n) => n.as_f64().unwrap(),
        other => match var_default(tf, other) {
            Some(default) => number(tf, default),
            None => panic!("not a number or a variable with a default: {other:?}"),
        },
    }
}

fn string(expr: &Expression) -> &str {
    match expr {
        Expression::String(s) => s,
        other => panic!("not a string literal: {other:?}"),
    }
}

fn strings(expr: &Expression) -> Vec<&str> {
    match expr {
        Expression::Array(items) => items.iter().map(string).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn key_name(key: &ObjectKey) -> Option<&str> {
    match key {
        ObjectKey::Identifier(id) => Some(id.as_str()),
        ObjectKey::Expression(Expression::String(s)) => Some(s),
        _ => None,
    }
}

/// The fields of an object literal, or of the object literals that `merge(...)` combines.
fn fields(expr: &Expression) -> Vec<(&str, &Expression)> {
    match expr {
        Expression::Object(o) => o
            .iter()
            .filter_map(|(k, v)| Some((key_name(k)?, v)))
            .collect(),
        Expression::FuncCall(f) if f.name.name.as_str() == "merge" => {
            f.args.iter().flat_map(fields).collect()
        }
        _ => Vec::new(),
    }
}

fn field<'a>(expr: &'a Expression, key: &str) -> &'a Expression {
    fields(expr)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field '{key}'"))
}

/// The direct subexpressions of `expr`.
fn children(expr: &Expression) -> Vec<&Expression> {
    match expr {
        Expression::Array(items) => items.iter().collect(),
        Expression::Object(o) => o
            .iter()
            .flat_map(|(k, v)| {
                let key = match k {
                    ObjectKey::Expression(e) => Some(e),
                    _ => None,
                };
                key.into_iter().chain([v])
            })
            .collect(),
        Expression::Traversal(t) => std::iter::once(&t.expr)
            .chain(t.operators.iter().filter_map(|op| match op {
                TraversalOperator::Index(e) => Some(e),
                _ => None,
            }))
            .collect(),
        Expression::FuncCall(f) => f.args.iter().collect(),
        Expression::Parenthesis(e) => vec![e],
        Expression::Conditional(c) => vec![&c.cond_expr, &c.true_expr, &c.false_expr],
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(u) => vec![&u.expr],
            Operation::Binary(b) => vec![&b.lhs_expr, &b.rhs_expr],
        },
        Expression::ForExpr(f) => [
            Some(&f.collection_expr),
            f.key_expr.as_ref(),
            Some(&f.value_expr),
            f.cond_expr.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => Vec::new(),
    }
}

/// `expr` and all its subexpressions, depth first.
fn all(expr: &Expression) -> Vec<&Expression> {
    let mut out = vec![expr];
    let mut i = 0;
    while i < out.len() {
        let next = children(out[i]);
        out.extend(next);
        i += 1;
    }
    out
}

/// Whether `expr` mentions `root.name` (`var.x`, `local.y`, ...).
fn mentions(expr: &Expression, root: &str, name: &str) -> bool {
    all(expr)
        .into_iter()
        .any(|e| matches!(reference(e), Some((r, p)) if r == root && p.first() == Some(&name)))
}

/// Whether `expr` depends on `var.NAME`, directly or through any chain of locals.
fn depends_on_var<'a>(tf: &'a [Body], expr: &'a Expression, name: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![expr];
    while let Some(e) = todo.pop() {
        for sub in all(e) {
            match reference(sub) {
                Some(("var", path)) if path.first() == Some(&name) => return true,
                Some(("local", path)) if !path.is_empty() && seen.insert(path[0]) => {
                    todo.push(local(tf, path[0]));
                }
                _ => {}
            }
        }
    }
    false
}

/// Every attribute expression of a body and of its nested blocks.
fn body_exprs(body: &Body) -> Vec<&Expression> {
    body.attributes()
        .map(|a| &a.expr)
        .chain(body.blocks().flat_map(|b| body_exprs(&b.body)))
        .collect()
}

/// The one container of task definition `name`: `jsonencode([local.X])` → X's object.
fn container<'a>(tf: &'a [Body], name: &str) -> &'a Expression {
    let td = tf_block(tf, "resource", &["aws_ecs_task_definition", name]);
    let defs = attr(&td.body, "container_definitions").expect("container_definitions");
    let Expression::FuncCall(f) = defs else {
        panic!("container_definitions is not jsonencode(...): {defs:?}");
    };
    assert_eq!(f.name.name.as_str(), "jsonencode");
    let Expression::Array(items) = &f.args[0] else {
        panic!("jsonencode of a list of containers expected");
    };
    assert_eq!(items.len(), 1, "one container");
    resolve(tf, &items[0])
}

/// Whether a lifecycle precondition of `block` mentions every one of `vars`.
fn has_precondition(block: &Block, vars: &[&str]) -> bool {
    nested(&block.body, "lifecycle")
        .into_iter()
        .flat_map(|l| nested(&l.body, "precondition"))
        .filter_map(|p| attr(&p.body, "condition"))
        .any(|c| vars.iter().all(|v| mentions(c, "var", v)))
}

/// The statements of the policy documents attached to role `role` by aws_iam_role_policy.
fn role_statements<'a>(tf: &'a [Body], role: &str) -> Vec<&'a Block> {
    tf_blocks(tf, "resource", &["aws_iam_role_policy"])
        .into_iter()
        .filter(|p| {
            attr(&p.body, "role").is_some_and(|r| {
                matches!(reference(r), Some(("aws_iam_role", path)) if path.first() == Some(&role))
            })
        })
        .flat_map(|p| {
            let policy = attr(&p.body, "policy").expect("policy");
            let Some(("data", path)) = reference(policy) else {
                panic!("the policy of a role is an aws_iam_policy_document: {policy:?}");
            };
            assert_eq!(path[0], "aws_iam_policy_document");
            let doc = tf_block(tf, "data", &["aws_iam_policy_document", path[1]]);
            // Plain statements, and the content of `dynamic "statement"` blocks.
            let dynamic = nested(&doc.body, "dynamic")
                .into_iter()
                .filter(|d| d.labels.first().is_some_and(|l| l.as_str() == "statement"))
                .flat_map(|d| nested(&d.body, "content"));
            nested(&doc.body, "statement").into_iter().chain(dynamic)
        })
        .collect()
}

fn actions(statement: &Block) -> Vec<&str> {
    strings(attr(&statement.body, "actions").expect("actions"))
}

fn task_role_actions(tf: &[Body], role: &str) -> BTreeSet<String> {
    role_statements(tf, role)
        .iter()
        .flat_map(|s| actions(s))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_task_checks_its_health_with_the_binary_itself() {
    let tf = terraform();
    let c = container(&tf, "service");
    assert_eq!(string(resolve(&tf, field(c, "name"))), "eeg-pipeline");
    assert_eq!(strings(field(c, "command")), ["run"]);
    let check = strings(field(field(c, "healthCheck"), "command"));
    assert_eq!(check.len(), 3, "{check:?}");
    assert_eq!(check[0], "CMD");
    assert_eq!(check[2], "healthcheck");
    // The path is where the image puts the binary.
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(check[1].ends_with("/eeg-pipeline"), "{check:?}");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("COPY ") && l.trim_end().ends_with(check[1])),
        "the image has {}",
        check[1]
    );
    for key in ["interval", "timeout", "retries", "startPeriod"] {
        assert!(
            number(&tf, field(field(c, "healthCheck"), key)) > 0.0,
            "{key}"
        );
    }
    // Nothing in the module calls curl or wget: the image has neither.
    for e in tf.iter().flat_map(|b| body_exprs(b)).flat_map(all) {
        if let Expression::String(s) = e {
            assert!(!s.contains("curl") && !s.contains("wget"), "{s}");
        }
    }
    let Expression::Array(ports) = field(c, "portMappings") else {
        panic!("portMappings");
    };
    assert_eq!(number(&tf, field(&ports[0], "containerPort")), 8080.0);
}

#[test]
fn ecs_waits_longer_than_the_service_takes_to_stop() {
    let tf = terraform();
    let c = container(&tf, "service");
    let stop = number(&tf, field(c, "stopTimeout"));
    let shutdown = number(&tf, field(local(&tf, "environment"), "SHUTDOWN_TIMEOUT_S"));
    assert!(stop <= 120.0, "Fargate's limit");
    assert!(
        stop > shutdown,
        "stopTimeout {stop} > SHUTDOWN_TIMEOUT_S {shutdown}"
    );
    let td = tf_block(&tf, "resource", &["aws_ecs_task_definition", "service"]);
    let (Some(stop_var), Some(shutdown_var)) = (
        var_name(field(c, "stopTimeout")),
        var_name(field(local(&tf, "environment"), "SHUTDOWN_TIMEOUT_S")),
    ) else {
        return;
    };
    assert!(
        has_precondition(td, &[stop_var, shutdown_var]),
        "a precondition keeps {shutdown_var} below {stop_var}"
    );
}

#[test]
fn a_deployment_that_fails_is_rolled_back() {
    let tf = terraform();
    let service = tf_block(&tf, "resource", &["aws_ecs_service"]);
    let breaker = nested(&service.body, "deployment_circuit_breaker");
    assert_eq!(breaker.len(), 1);
    assert_eq!(
        attr(&breaker[0].body, "enable"),
        Some(&Expression::Bool(true))
    );
    assert_eq!(
        attr(&breaker[0].body, "rollback"),
        Some(&Expression::Bool(true))
    );
    assert_eq!(
        attr(&service.body, "launch_type").map(string),
        Some("FARGATE")
    );
    assert!(!nested(&service.body, "network_configuration").is_empty());
}

#[test]
fn the_container_gets_only_settings_the_service_reads_and_credentials_as_secrets() {
    let tf = terraform();
    let env = local(&tf, "environment");
    let names: Vec<&str> = fields(env).into_iter().map(|(k, _)| k).collect();
    assert!(names.contains(&"KAFKA_BOOTSTRAP_SERVERS"), "{names:?}");
    for name in &names {
        assert!(
            SERVICE_ENV.contains(name),
            "{name} is not read by the service"
        );
        assert!(
            !SASL_CREDENTIALS.contains(name),
            "{name} in plain environment"
        );
    }
    // Both containers take their environment from that table.
    for td in ["service", "topics"] {
        let e = resolve(&tf, field(container(&tf, td), "environment"));
        assert!(mentions(e, "local", "environment"), "{td}");
    }
    // The credentials appear only as ECS secrets: {name = ..., valueFrom = ARN}.
    let mut as_secret = BTreeSet::new();
    for e in tf.iter().flat_map(|b| body_exprs(b)).flat_map(all) {
        match e {
            Expression::Object(_) => {
                let f = fields(e);
                let value_from = f.iter().any(|(k, _)| *k == "valueFrom");
                for (k, v) in &f {
                    assert!(!SASL_CREDENTIALS.contains(k), "{k} as an object key");
                    if let Expression::String(s) = v
                        && SASL_CREDENTIALS.contains(&s.as_str())
                    {
                        assert!(*k == "name" && value_from, "{s} outside a secret");
                        as_secret.insert(s.clone());
                    }
                }
            }
            Expression::TemplateExpr(t) => {
                let t = t.to_string();
                assert!(!SASL_CREDENTIALS.iter().any(|c| t.contains(c)), "{t}");
            }
            _ => {}
        }
    }
    assert_eq!(as_secret.len(), 2, "{as_secret:?}");
}

#[test]
fn the_task_role_reads_and_writes_its_topics_but_never_creates_or_deletes_them() {
    let tf = terraform();
    let granted = task_role_actions(&tf, "task");
    for needed in [
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeCluster",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
        "kafka-cluster:WriteData",
        "kafka-cluster:DescribeGroup",
        "kafka-cluster:AlterGroup",
        "kafka-cluster:DescribeTopicDynamicConfiguration",
    ] {
        assert!(
            granted.contains(needed),
            "{needed} missing from {granted:?}"
        );
    }
    for action in &granted {
        assert!(!action.contains('*'), "{action}");
        assert!(
            !["CreateTopic", "DeleteTopic", "AlterTopic", "AlterCluster"]
                .iter()
                .any(|a| action.ends_with(&format!(":{a}"))),
            "{action}"
        );
    }
    for s in role_statements(&tf, "task") {
        let resources = attr(&s.body, "resources").expect("resources");
        let wildcard = all(resolve(&tf, resources)).into_iter().any(|e| match e {
            Expression::String(r) => r.contains('*'),
            Expression::TemplateExpr(t) => t.to_string().contains('*'),
            _ => false,
        });
        // Only ECS Exec's Session Manager channels, which have no resource-level permissions.
        if wildcard {
            assert!(
                actions(s).iter().all(|a| a.starts_with("ssmmessages:")),
                "'*' resource for {:?}",
                actions(s)
            );
        }
        // Reads cover the raw and state topics; writes the outputs and the state topic.
        let topics = |e: &Expression| -> BTreeSet<String> {
            all(resolve(&tf, e))
                .into_iter()
                .filter_map(|e| match reference(e) {
                    Some(("local", path)) if path.len() == 2 && path[0] == "topic_arn" => {
                        Some(path[1].to_string())
                    }
                    _ => None,
                })
                .collect()
        };
        let acts = actions(s);
        if acts.contains(&"kafka-cluster:ReadData") {
            assert_eq!(topics(resources), ["raw", "state"].map(String::from).into());
        }
        if acts.contains(&"kafka-cluster:WriteData") {
            let w: BTreeSet<String> = ["processed", "triggers", "dlq", "state"]
                .map(String::from)
                .into();
            assert_eq!(topics(resources), w);
        }
    }
    // Topic and group ARNs are the cluster's path under another resource type.
    for (name, kind) in [
        ("msk_topic_prefix", ":topic/"),
        ("msk_group_prefix", ":group/"),
    ] {
        let Expression::FuncCall(f) = local(&tf, name) else {
            panic!("{name}");
        };
        assert_eq!(f.name.name.as_str(), "replace");
        assert_eq!(var_name(&f.args[0]), Some("msk_cluster_arn"));
        assert_eq!(string(&f.args[1]), ":cluster/");
        assert_eq!(string(&f.args[2]), kind);
    }
    // Creating topics is the topics task's job.
    assert!(task_role_actions(&tf, "topics").contains("kafka-cluster:CreateTopic"));
}

#[test]
fn the_tasks_reach_the_brokers_on_the_msk_port_redis_on_its_own_and_nothing_else_but_https() {
    let tf = terraform();
    let on_tasks = |b: &&Block| {
        attr(&b.body, "security_group_id").is_some_and(|e| {
            matches!(reference(e), Some(("aws_security_group", p)) if p.first() == Some(&"tasks"))
        })
    };
    let egress: Vec<&Block> = tf_blocks(&tf, "resource", &["aws_vpc_security_group_egress_rule"])
        .into_iter()
        .filter(on_tasks)
        .collect();
    let mut ports = BTreeSet::new();
    for rule in &egress {
        assert_eq!(attr(&rule.body, "ip_protocol").map(string), Some("tcp"));
        let from = attr(&rule.body, "from_port").expect("from_port");
        let to = attr(&rule.body, "to_port").expect("to_port");
        assert_eq!(number(&tf, from), number(&tf, to), "one port per rule");
        ports.insert(number(&tf, from) as u16);
        match var_name(from) {
            Some("redis_port") => {
                // Only to the cache's security group.
                let to_sg = attr(&rule.body, "referenced_security_group_id");
                assert_eq!(to_sg.and_then(var_name), Some("redis_security_group_id"));
            }
            Some(port_var) => assert_eq!(number(&tf, variable_default(&tf, port_var)), 9098.0),
            None => {}
        }
    }
    assert_eq!(ports, BTreeSet::from([443, 6379, 9098]));
    // No inline rules that would fight the rule resources.
    let sg = tf_block(&tf, "resource", &["aws_security_group", "tasks"]);
    assert!(nested(&sg.body, "egress").is_empty() && attr(&sg.body, "egress").is_none());
    assert!(nested(&sg.body, "ingress").is_empty() && attr(&sg.body, "ingress").is_none());
    // Inbound only to the health and metrics port.
    for rule in tf_blocks(&tf, "resource", &["aws_vpc_security_group_ingress_rule"])
        .into_iter()
        .filter(on_tasks)
    {
        assert_eq!(number(&tf, attr(&rule.body, "from_port").unwrap()), 8080.0);
        assert_eq!(number(&tf, attr(&rule.body, "to_port").unwrap()), 8080.0);
    }
}

#[test]
fn autoscaling_follows_consumer_lag_and_never_runs_more_tasks_than_partitions() {
    let tf = terraform();
    let target = tf_block(&tf, "resource", &["aws_appautoscaling_target"]);
    assert_eq!(
        attr(&target.body, "scalable_dimension").map(string),
        Some("ecs:service:DesiredCount")
    );
    let max = attr(&target.body, "max_capacity").expect("max_capacity");
    let max_var = var_name(max).expect("max_capacity is a variable");
    let partitions = number(&tf, variable_default(&tf, "raw_topic_partitions"));
    assert!(
        number(&tf, max) <= partitions,
        "max_count <= raw_topic_partitions"
    );
    assert!(
        has_precondition(target, &[max_var, "raw_topic_partitions"]),
        "a precondition keeps {max_var} at or below raw_topic_partitions"
    );

    let policy = tf_block(&tf, "resource", &["aws_appautoscaling_policy"]);
    assert_eq!(
        attr(&policy.body, "policy_type").map(string),
        Some("TargetTrackingScaling")
    );
    let config = &nested(&policy.body, "target_tracking_scaling_policy_configuration")[0].body;
    let scale_in = number(&tf, attr(config, "scale_in_cooldown").unwrap());
    let scale_out = number(&tf, attr(config, "scale_out_cooldown").unwrap());
    assert!(
        scale_in > scale_out,
        "scale in {scale_in} s, out {scale_out} s"
    );
    let metric = &nested(config, "customized_metric_specification")[0].body;
    assert_eq!(attr(metric, "namespace").map(string), Some("AWS/Kafka"));
    let name = attr(metric, "metric_name").unwrap();
    let name = match var_name(name) {
        Some(v) => string(variable_default(&tf, v)),
        None => string(name),
    };
    assert!(["SumOffsetLag", "MaxOffsetLag"].contains(&name), "{name}");
    let dimensions: BTreeSet<&str> = nested(metric, "dimensions")
        .iter()
        .map(|d| string(attr(&d.body, "name").unwrap()))
        .collect();
    assert_eq!(
        dimensions,
        BTreeSet::from(["Cluster Name", "Consumer Group", "Topic"])
    );
}

#[test]
fn the_redis_password_comes_from_its_secret_never_as_plain_environment() {
    let tf = terraform();
    let env = local(&tf, "environment");
    // The Redis settings are there only with a redis_url: null (left out) without one.
    let redis: Vec<(&str, &Expression)> = fields(env)
        .into_iter()
        .filter(|(k, _)| k.starts_with("REDIS_"))
        .collect();
    let names: BTreeSet<&str> = redis.iter().map(|(k, _)| *k).collect();
    for needed in ["REDIS_URL", "REDIS_CLUSTER", "REDIS_REQUIRED"] {
        assert!(names.contains(needed), "{needed} missing from {names:?}");
    }
    assert!(
        !names.contains(REDIS_PASSWORD),
        "{REDIS_PASSWORD} in plain environment"
    );
    for (name, value) in &redis {
        let Expression::Conditional(c) = value else {
            panic!("{name} is not conditional on redis_url: {value:?}");
        };
        assert!(depends_on_var(&tf, &c.cond_expr, "redis_url"), "{name}");
        assert_eq!(c.false_expr, Expression::Null, "{name} without redis_url");
    }
    for (name, var) in [
        ("REDIS_URL", "redis_url"),
        ("REDIS_CLUSTER", "redis_cluster"),
        ("REDIS_REQUIRED", "redis_required"),
    ] {
        let Expression::Conditional(c) = field(env, name) else {
            unreachable!()
        };
        assert_eq!(var_name(&c.true_expr), Some(var), "{name}");
    }
    assert_eq!(
        variable_default(&tf, "redis_url"),
        &Expression::String(String::new()),
        "no Redis unless asked for"
    );
    assert_eq!(
        variable_default(&tf, "redis_required"),
        &Expression::Bool(false)
    );
    assert_eq!(
        variable_default(&tf, "redis_cluster"),
        &Expression::Bool(true)
    );

    // REDIS_PASSWORD appears only as an ECS secret whose valueFrom is the secret's ARN.
    let mut as_secret = 0;
    for e in tf.iter().flat_map(|b| body_exprs(b)).flat_map(all) {
        match e {
            Expression::Object(_) => {
                let f = fields(e);
                for (k, v) in &f {
                    assert_ne!(*k, REDIS_PASSWORD, "{REDIS_PASSWORD} as an object key");
                    if matches!(v, Expression::String(s) if s == REDIS_PASSWORD) {
                        assert_eq!(*k, "name", "{REDIS_PASSWORD} outside a secret");
                        let from = f
                            .iter()
                            .find(|(k, _)| *k == "valueFrom")
                            .map(|(_, v)| *v)
                            .unwrap_or_else(|| panic!("{REDIS_PASSWORD} without valueFrom"));
                        assert_eq!(var_name(from), Some("redis_password_secret_arn"));
                        as_secret += 1;
                    }
                }
            }
            Expression::TemplateExpr(t) => {
                assert!(!t.to_string().contains(REDIS_PASSWORD), "{t}");
            }
            _ => {}
        }
    }
    assert_eq!(as_secret, 1);
    // The service's container gets it; the topics task, which does not use the cache, does not.
    let uses_redis_secret = |td: &str| {
        let c = container(&tf, td);
        all(c).into_iter().any(|e| {
            matches!(reference(e), Some(("local", p)) if p.len() == 1
                && depends_on_var(&tf, local(&tf, p[0]), "redis_password_secret_arn"))
        })
    };
    assert!(uses_redis_secret("service"));
    assert!(!uses_redis_secret("topics"));
    let topics_env = resolve(&tf, field(container(&tf, "topics"), "environment"));
    assert!(
        all(topics_env)
            .into_iter()
            .any(|e| matches!(e, Expression::String(s) if s == "REDIS_")),
        "the topics task leaves the REDIS_ settings out"
    );
}

#[test]
fn redis_is_reached_from_the_tasks_security_group_into_the_caches_on_6379() {
    let tf = terraform();
    let into_redis: Vec<&Block> =
        tf_blocks(&tf, "resource", &["aws_vpc_security_group_ingress_rule"])
            .into_iter()
            .filter(|b| {
                attr(&b.body, "security_group_id").and_then(var_name)
                    == Some("redis_security_group_id")
            })
            .collect();
    assert_eq!(into_redis.len(), 1, "one inbound rule on the cache's group");
    let rule = &into_redis[0].body;
    assert_eq!(attr(rule, "ip_protocol").map(string), Some("tcp"));
    assert_eq!(number(&tf, attr(rule, "from_port").unwrap()), 6379.0);
    assert_eq!(number(&tf, attr(rule, "to_port").unwrap()), 6379.0);
    let from = attr(rule, "referenced_security_group_id").expect("from a security group");
    assert!(
        matches!(reference(from), Some(("aws_security_group", p)) if p == ["tasks", "id"]),
        "from the tasks' group: {from:?}"
    );
    assert!(attr(rule, "cidr_ipv4").is_none() && attr(rule, "cidr_ipv6").is_none());
    // Only when there is a cache and its group is given.
    let count = attr(rule, "count").expect("count");
    assert!(depends_on_var(&tf, count, "redis_security_group_id"));
    assert!(depends_on_var(&tf, count, "redis_url"));
    assert_eq!(
        variable_default(&tf, "redis_security_group_id"),
        &Expression::String(String::new())
    );

    // The tasks' own egress to that group (their group allows only what its rules list).
    let out: Vec<&Block> = tf_blocks(&tf, "resource", &["aws_vpc_security_group_egress_rule"])
        .into_iter()
        .filter(|b| {
            attr(&b.body, "referenced_security_group_id").and_then(var_name)
                == Some("redis_security_group_id")
        })
        .collect();
    assert_eq!(out.len(), 1, "one egress rule to the cache's group");
    let rule = &out[0].body;
    assert!(matches!(
        attr(rule, "security_group_id").and_then(reference),
        Some(("aws_security_group", p)) if p == ["tasks", "id"]
    ));
    assert_eq!(number(&tf, attr(rule, "from_port").unwrap()), 6379.0);
    assert_eq!(number(&tf, attr(rule, "to_port").unwrap()), 6379.0);
    // A redis_url without the group would leave the tasks no way to Redis.
    let sg = tf_block(&tf, "resource", &["aws_security_group", "tasks"]);
    assert!(has_precondition(
        sg,
        &["redis_url", "redis_security_group_id"]
    ));
}

#[test]
fn the_execution_role_may_read_the_redis_secret_and_the_task_role_may_not() {
    let tf = terraform();
    let reads_redis_secret = |role: &str, action: &str| {
        role_statements(&tf, role).into_iter().any(|s| {
            actions(s).contains(&action)
                && attr(&s.body, "resources")
                    .is_some_and(|r| depends_on_var(&tf, r, "redis_password_secret_arn"))
        })
    };
    assert!(reads_redis_secret(
        "execution",
        "secretsmanager:GetSecretValue"
    ));
    assert!(reads_redis_secret("execution", "ssm:GetParameters"));
    for s in role_statements(&tf, "task") {
        let resources = attr(&s.body, "resources").expect("resources");
        assert!(!depends_on_var(&tf, resources, "redis_password_secret_arn"));
        assert!(
            !actions(s)
                .iter()
                .any(|a| a.starts_with("secretsmanager:") || a.starts_with("ssm:")),
            "{:?}",
            actions(s)
        );
    }
    // The service is kept until its secret policy is gone, as with the SCRAM secrets.
    let service = tf_block(&tf, "resource", &["aws_ecs_service"]);
    let after: Vec<(&str, Vec<&str>)> = match attr(&service.body, "depends_on") {
        Some(Expression::Array(items)) => items.iter().filter_map(reference).collect(),
        other => panic!("depends_on: {other:?}"),
    };
    let policy = tf_blocks(&tf, "resource", &["aws_iam_role_policy"])
        .into_iter()
        .find(|p| {
            attr(&p.body, "policy").is_some_and(|e| match reference(e) {
                Some(("data", path)) => {
                    let doc = tf_block(&tf, "data", &["aws_iam_policy_document", path[1]]);
                    body_exprs(&doc.body)
                        .into_iter()
                        .any(|e| depends_on_var(&tf, e, "redis_password_secret_arn"))
                }
                _ => false,
            })
        })
        .expect("a role policy for the Redis secret");
    let name = policy.labels[1].as_str();
    assert!(
        after.contains(&("aws_iam_role_policy", vec![name])),
        "the service depends on aws_iam_role_policy.{name}"
    );
}
