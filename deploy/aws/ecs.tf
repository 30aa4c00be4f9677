locals {
  # `secrets` only when there are any (SCRAM, the Redis password); with IAM and no Redis
  # password the container has none.
  secrets_entry = {
    for key, refs in { secrets = concat(local.kafka_secrets, local.redis_secrets) } : key => refs if length(refs) > 0
  }
  # The topics task does not use the cache: Kafka's secrets only.
  topics_secrets_entry = { for key, refs in { secrets = local.kafka_secrets } : key => refs if length(refs) > 0 }

  service_container = merge({
    name      = local.container_name
    image     = var.image
    essential = true
    command   = ["run"]
    # The image's user (uid 10001) is kept: no `user` here.

    portMappings = [{
      name          = "http"
      containerPort = var.http_port
      protocol      = "tcp"
    }]

    environment = local.container_environment

    # The binary checks itself (200 from /health/ready within 2 s): the image has no curl or wget.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/eeg-pipeline", "healthcheck"]
      interval    = var.health_check.interval
      timeout     = var.health_check.timeout
      retries     = var.health_check.retries
      startPeriod = var.health_check.start_period
    }

    # On SIGTERM the service finishes, commits and exits within SHUTDOWN_TIMEOUT_S; ECS sends
    # SIGKILL after stopTimeout, which is kept above it.
    stopTimeout = var.stop_timeout

    # The service writes nothing to disk. ECS Exec needs a writable root file system.
    readonlyRootFilesystem = !var.enable_execute_command

    logConfiguration = local.log_configuration
  }, local.secrets_entry)

  # `eeg-pipeline topics create`: the same image and settings, run once as an admin step.
  topics_container = merge({
    name             = "${local.container_name}-topics"
    image            = var.image
    essential        = true
    command          = ["topics", "create", "--partitions", tostring(var.raw_topic_partitions)]
    environment      = local.topics_environment
    logConfiguration = local.log_configuration

    readonlyRootFilesystem = true
  }, local.topics_secrets_entry)
}

resource "aws_ecs_task_definition" "service" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([local.service_container])

  lifecycle {
    precondition {
      condition     = var.shutdown_timeout_s + 5 <= var.stop_timeout
      error_message = "shutdown_timeout_s must be at least 5 s below stop_timeout, so that the service commits and exits before ECS kills it."
    }
    precondition {
      condition     = local.iam_auth || (var.kafka_sasl_username_arn != null && var.kafka_sasl_password_arn != null)
      error_message = "kafka_auth = \"scram\" needs kafka_sasl_username_arn and kafka_sasl_password_arn."
    }
  }
}

resource "aws_ecs_task_definition" "topics" {
  count = var.create_topics_task ? 1 : 0

  family                   = "${var.name}-topics"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "256"
  memory                   = "512"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.topics[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([local.topics_container])
}

resource "aws_ecs_service" "this" {
  name             = var.name
  cluster          = data.aws_ecs_cluster.this.arn
  task_definition  = aws_ecs_task_definition.service.arn
  desired_count    = var.min_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = var.assign_public_ip
  }

  # New tasks join the group and take partitions (cooperative-sticky) before old ones stop; a
  # deployment whose tasks never become healthy is rolled back.
  deployment_minimum_healthy_percent = var.deployment_minimum_healthy_percent
  deployment_maximum_percent         = var.deployment_maximum_percent

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  enable_execute_command  = var.enable_execute_command
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  # The task count belongs to the autoscaling policy once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  # Keep the roles' policies until the service has drained (tasks commit on the way out).
  depends_on = [
    aws_iam_role_policy.task_kafka,
    aws_iam_role_policy.execution_secrets,
    aws_iam_role_policy.execution_redis_secret,
    aws_iam_role_policy_attachment.execution,
  ]
}
