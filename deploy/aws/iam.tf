data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# Only ECS tasks of this account may assume the roles.
data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

# ---------------------------------------------------------------------------------------
# Execution role: used by ECS to pull the image, write the logs and read the SCRAM secrets
# and the Redis password.
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  count = length(local.secret_refs) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = length(local.secretsmanager_arns) > 0 ? [1] : []
    content {
      sid       = "ReadKafkaSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secretsmanager_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.ssm_parameter_arns) > 0 ? [1] : []
    content {
      sid       = "ReadKafkaParameters"
      actions   = ["ssm:GetParameters"]
      resources = local.ssm_parameter_arns
    }
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn != null ? [1] : []
    content {
      sid       = "DecryptKafkaSecrets"
      actions   = ["kms:Decrypt"]
      resources = [var.secrets_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(local.secret_refs) > 0 ? 1 : 0

  name   = "kafka-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets[0].json
}

# The Redis password (REDIS_PASSWORD), only with a Redis and a secret.
data "aws_iam_policy_document" "execution_redis_secret" {
  count = length(local.redis_secret_refs) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = length(local.redis_secretsmanager_arns) > 0 ? [1] : []
    content {
      sid       = "ReadRedisSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.redis_secretsmanager_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.redis_ssm_parameter_arns) > 0 ? [1] : []
    content {
      sid       = "ReadRedisParameter"
      actions   = ["ssm:GetParameters"]
      resources = local.redis_ssm_parameter_arns
    }
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn != null ? [1] : []
    content {
      sid       = "DecryptRedisSecret"
      actions   = ["kms:Decrypt"]
      resources = [var.secrets_kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "execution_redis_secret" {
  count = length(local.redis_secret_refs) > 0 ? 1 : 0

  name   = "redis-secret"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_redis_secret[0].json
}

# ---------------------------------------------------------------------------------------
# Task role of the service: MSK IAM access control (kafka_auth = "iam"). It reads and writes
# data and commits offsets; it never creates or deletes topics (that is the topics task).
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task_kafka" {
  statement {
    sid = "Cluster"
    actions = [
      "kafka-cluster:Connect",
      "kafka-cluster:DescribeCluster",
      # The producer is idempotent (acks=all).
      "kafka-cluster:WriteDataIdempotently",
    ]
    resources = [var.msk_cluster_arn]
  }

  statement {
    sid = "ReadTopics"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:ReadData",
    ]
    resources = local.read_topic_arns
  }

  statement {
    sid = "WriteTopics"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:WriteData",
      # To read the topics' max.message.bytes and keep every output under it.
      "kafka-cluster:DescribeTopicDynamicConfiguration",
    ]
    resources = local.write_topic_arns
  }

  statement {
    sid = "ConsumerGroups"
    actions = [
      "kafka-cluster:DescribeGroup",
      "kafka-cluster:AlterGroup",
    ]
    resources = local.group_arns
  }
}

resource "aws_iam_role_policy" "task_kafka" {
  count = local.iam_auth ? 1 : 0

  name   = "kafka"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_kafka.json
}

# ECS Exec: the Session Manager channel actions have no resource-level permissions.
data "aws_iam_policy_document" "task_exec" {
  statement {
    sid = "EcsExec"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "task_exec" {
  count = var.enable_execute_command ? 1 : 0

  name   = "ecs-exec"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_exec.json
}

# ---------------------------------------------------------------------------------------
# Task role of the one-shot topics task: creates the five topics when they are missing.
# ---------------------------------------------------------------------------------------

resource "aws_iam_role" "topics" {
  count = var.create_topics_task ? 1 : 0

  name               = "${var.name}-topics"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "topics_kafka" {
  statement {
    sid = "Cluster"
    actions = [
      "kafka-cluster:Connect",
      "kafka-cluster:DescribeCluster",
    ]
    resources = [var.msk_cluster_arn]
  }

  statement {
    sid = "CreateTopics"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:CreateTopic",
    ]
    resources = values(local.topic_arn)
  }
}

resource "aws_iam_role_policy" "topics_kafka" {
  count = var.create_topics_task && local.iam_auth ? 1 : 0

  name   = "kafka-topics"
  role   = aws_iam_role.topics[0].id
  policy = data.aws_iam_policy_document.topics_kafka.json
}
