# The tasks' security group. Terraform removes the default allow-all egress rule of a new
# group, so the tasks reach only what the rules below allow: the brokers on kafka_port,
# Redis on redis_port (with a redis_url) and HTTPS (ECR, CloudWatch Logs, STS for the task
# role's credentials). DNS to the VPC resolver is not filtered by security groups.
resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-tasks-"
  description = "eeg-pipeline tasks: egress to the Kafka brokers and HTTPS, inbound health and metrics only when configured"
  vpc_id      = var.vpc_id

  lifecycle {
    # A replacement group is attached to the service before the old one is deleted.
    create_before_destroy = true

    precondition {
      condition     = var.msk_security_group_id != null || length(var.kafka_cidr_blocks) > 0
      error_message = "Set msk_security_group_id or kafka_cidr_blocks: the tasks need a way to the brokers on kafka_port."
    }
    precondition {
      condition     = var.redis_url == "" || var.redis_security_group_id != ""
      error_message = "redis_url needs redis_security_group_id: the tasks need a way to Redis on redis_port."
    }
  }
}

resource "aws_vpc_security_group_egress_rule" "kafka_to_msk_sg" {
  count = var.msk_security_group_id != null ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "Kafka brokers (MSK security group)"
  ip_protocol                  = "tcp"
  from_port                    = var.kafka_port
  to_port                      = var.kafka_port
  referenced_security_group_id = var.msk_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "kafka_to_cidr" {
  for_each = toset(var.kafka_cidr_blocks)

  security_group_id = aws_security_group.tasks.id
  description       = "Kafka brokers"
  ip_protocol       = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = toset(var.https_cidr_blocks)

  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS: ECR, CloudWatch Logs, STS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "redis_to_redis_sg" {
  count = local.redis_enabled && var.redis_security_group_id != "" ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "Redis (ElastiCache security group)"
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
  referenced_security_group_id = var.redis_security_group_id
}

# The brokers accept the tasks on kafka_port.
resource "aws_vpc_security_group_ingress_rule" "msk_from_tasks" {
  count = var.msk_security_group_id != null && var.add_msk_ingress_rule ? 1 : 0

  security_group_id            = var.msk_security_group_id
  description                  = "${var.name} tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.kafka_port
  to_port                      = var.kafka_port
  referenced_security_group_id = aws_security_group.tasks.id
}

# Redis accepts the tasks on redis_port.
resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  count = local.redis_enabled && var.redis_security_group_id != "" && var.add_redis_ingress_rule ? 1 : 0

  security_group_id            = var.redis_security_group_id
  description                  = "${var.name} tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.redis_port
  to_port                      = var.redis_port
  referenced_security_group_id = aws_security_group.tasks.id
}

# Health and metrics, only from the given networks or groups.
resource "aws_vpc_security_group_ingress_rule" "http_from_cidr" {
  for_each = toset(var.http_ingress_cidr_blocks)

  security_group_id = aws_security_group.tasks.id
  description       = "eeg-pipeline health and metrics"
  ip_protocol       = "tcp"
  from_port         = var.http_port
  to_port           = var.http_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "http_from_sg" {
  for_each = toset(var.http_ingress_security_group_ids)

  security_group_id            = aws_security_group.tasks.id
  description                  = "eeg-pipeline health and metrics"
  ip_protocol                  = "tcp"
  from_port                    = var.http_port
  to_port                      = var.http_port
  referenced_security_group_id = each.value
}
