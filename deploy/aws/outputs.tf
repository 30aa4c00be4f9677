output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_arn" {
  description = "ARN of the service's task definition (with revision)."
  value       = aws_ecs_task_definition.service.arn
}

output "topics_task_definition_arn" {
  description = "ARN of the one-shot `topics create` task definition, or null."
  value       = var.create_topics_task ? aws_ecs_task_definition.topics[0].arn : null
}

output "security_group_id" {
  description = "Security group of the tasks (allow it on the brokers' port if add_msk_ingress_rule is off, and on Redis' port if add_redis_ingress_rule is off)."
  value       = aws_security_group.tasks.id
}

output "task_role_arn" {
  description = "Task role of the service (MSK IAM permissions)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "Execution role (image pull, logs, SCRAM secrets, Redis password)."
  value       = aws_iam_role.execution.arn
}

output "redis_url" {
  description = "REDIS_URL of the service (no password in it), or null without Redis."
  value       = local.redis_enabled ? var.redis_url : null
}

output "log_group_name" {
  description = "CloudWatch log group of the service and the topics task."
  value       = aws_cloudwatch_log_group.this.name
}

output "run_topics_task_command" {
  description = "AWS CLI command that runs the topics task once."
  value = var.create_topics_task ? join(" ", [
    "aws ecs run-task",
    "--region ${data.aws_region.current.name}",
    "--cluster ${var.ecs_cluster_name}",
    "--launch-type FARGATE",
    "--task-definition ${aws_ecs_task_definition.topics[0].arn}",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", var.subnet_ids)}],securityGroups=[${aws_security_group.tasks.id}],assignPublicIp=${var.assign_public_ip ? "ENABLED" : "DISABLED"}}'",
  ]) : null
}
