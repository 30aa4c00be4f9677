data "aws_region" "current" {}

data "aws_ecs_cluster" "this" {
  cluster_name = var.ecs_cluster_name
}

locals {
  container_name = "eeg-pipeline"
  iam_auth       = var.kafka_auth == "iam"
  redis_enabled  = var.redis_url != ""

  # MSK ARNs. A cluster is arn:aws:kafka:REGION:ACCOUNT:cluster/CLUSTER_NAME/CLUSTER_UUID;
  # MSK names its topics and consumer groups by the same path under another resource type:
  #   arn:aws:kafka:REGION:ACCOUNT:topic/CLUSTER_NAME/CLUSTER_UUID/TOPIC
  #   arn:aws:kafka:REGION:ACCOUNT:group/CLUSTER_NAME/CLUSTER_UUID/GROUP
  # so both are the cluster ARN with ":cluster/" replaced and the name appended.
  msk_cluster_name = split("/", var.msk_cluster_arn)[1]
  msk_topic_prefix = replace(var.msk_cluster_arn, ":cluster/", ":topic/")
  msk_group_prefix = replace(var.msk_cluster_arn, ":cluster/", ":group/")

  topic_arn = { for role, topic in var.topics : role => "${local.msk_topic_prefix}/${topic}" }
  # Read: the raw topic, and the state topic (restored from its start on every assignment).
  read_topic_arns = [local.topic_arn.raw, local.topic_arn.state]
  # Written: the outputs and the state topic (snapshots and tombstones).
  write_topic_arns = [local.topic_arn.processed, local.topic_arn.triggers, local.topic_arn.dlq, local.topic_arn.state]
  # The service's group, and the fixed group id of its state reader (crates/eeg-ingest/src/state.rs),
  # which assigns partitions itself and never commits.
  group_arns = [
    "${local.msk_group_prefix}/${var.group_id}",
    "${local.msk_group_prefix}/eeg-pipeline-state-restore",
  ]

  # Settings of docs/service.md as environment variables; null ones are left out. The SASL
  # username and password and the Redis password are never here: they come from
  # `kafka_secrets` and `redis_secrets`.
  environment = {
    KAFKA_BOOTSTRAP_SERVERS  = var.kafka_bootstrap_servers
    KAFKA_SECURITY_PROTOCOL  = "SASL_SSL"
    KAFKA_SASL_MECHANISM     = local.iam_auth ? "AWS_MSK_IAM" : "SCRAM-SHA-512"
    KAFKA_SSL_CA_LOCATION    = var.kafka_ssl_ca_location
    KAFKA_CONNECT_TIMEOUT_S  = var.kafka_connect_timeout_s
    KAFKA_GROUP_ID           = var.group_id
    EEG_RAW_TOPIC            = var.topics.raw
    EEG_PROCESSED_TOPIC      = var.topics.processed
    EEG_TRIGGERS_TOPIC       = var.topics.triggers
    EEG_DLQ_TOPIC            = var.topics.dlq
    EEG_STATE_TOPIC          = var.topics.state
    EEG_CONFIG               = var.config_path
    SESSION_IDLE_S           = var.session_idle_s
    SHUTDOWN_TIMEOUT_S       = var.shutdown_timeout_s
    EEG_PARTITION_QUEUE      = var.partition_queue
    EEG_PARTITION_BUFFER_KIB = var.partition_buffer_kib
    EEG_STATUS_INTERVAL_S    = var.status_interval_s
    REDIS_URL                = local.redis_enabled ? var.redis_url : null
    REDIS_CLUSTER            = local.redis_enabled ? var.redis_cluster : null
    REDIS_USERNAME           = local.redis_enabled && var.redis_username != "" ? var.redis_username : null
    REDIS_REQUIRED           = local.redis_enabled ? var.redis_required : null
    HTTP_ADDR                = "0.0.0.0:${var.http_port}"
    AWS_REGION               = data.aws_region.current.name
    LOG_FORMAT               = "json"
    RUST_LOG                 = var.rust_log
  }
  container_environment = [
    for name, value in local.environment : { name = name, value = tostring(value) } if value != null
  ]
  # The topics task does not use the cache.
  topics_environment = [
    for name, value in local.environment : { name = name, value = tostring(value) }
    if value != null && !startswith(name, "REDIS_")
  ]

  # SCRAM credentials, only with kafka_auth = "scram": injected by ECS from Secrets Manager or
  # SSM (`secrets`), never as plain environment.
  kafka_secrets = local.iam_auth ? [] : [
    { name = "KAFKA_SASL_USERNAME", valueFrom = var.kafka_sasl_username_arn },
    { name = "KAFKA_SASL_PASSWORD", valueFrom = var.kafka_sasl_password_arn },
  ]
  # The Redis password, only with a Redis and a secret: injected the same way.
  redis_secrets = local.redis_enabled && var.redis_password_secret_arn != "" ? [
    { name = "REDIS_PASSWORD", valueFrom = var.redis_password_secret_arn },
  ] : []
  secret_refs = [for s in local.kafka_secrets : s.valueFrom if s.valueFrom != null]
  # A Secrets Manager reference may name a JSON key and version after the secret's ARN
  # (ARN:username::); IAM wants the secret's own ARN, its first seven ':'-separated fields.
  secretsmanager_arns = distinct([
    for ref in local.secret_refs : join(":", slice(split(":", ref), 0, 7))
    if split(":", ref)[2] == "secretsmanager"
  ])
  ssm_parameter_arns = distinct([for ref in local.secret_refs : ref if split(":", ref)[2] == "ssm"])
  redis_secret_refs  = [for s in local.redis_secrets : s.valueFrom]
  redis_secretsmanager_arns = [
    for ref in local.redis_secret_refs : join(":", slice(split(":", ref), 0, 7))
    if split(":", ref)[2] == "secretsmanager"
  ]
  redis_ssm_parameter_arns = [for ref in local.redis_secret_refs : ref if split(":", ref)[2] == "ssm"]

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = data.aws_region.current.name
      awslogs-stream-prefix = var.name
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
}
