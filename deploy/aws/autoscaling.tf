# The task count follows the consumer group's lag on the raw topic, as MSK publishes it to
# CloudWatch (namespace AWS/Kafka, dimensions Cluster Name, Consumer Group, Topic; provisioned
# and Serverless clusters alike). MSK publishes it only while the group is stable or empty, so
# nothing scales in the middle of a rebalance.
#
# max_count stays at or below raw_topic_partitions: a partition is consumed by one member of
# the group, so tasks beyond the partition count are assigned nothing and sit idle.
resource "aws_appautoscaling_target" "service" {
  count = var.autoscaling_enabled ? 1 : 0

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.ecs_cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count

  lifecycle {
    precondition {
      condition     = var.max_count <= var.raw_topic_partitions
      error_message = "max_count must not exceed raw_topic_partitions: tasks beyond the partition count get no partition and sit idle."
    }
    precondition {
      condition     = var.min_count <= var.max_count
      error_message = "min_count must not exceed max_count."
    }
  }
}

resource "aws_appautoscaling_policy" "consumer_lag" {
  count = var.autoscaling_enabled ? 1 : 0

  name               = "${var.name}-consumer-lag"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.service[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.service[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value = var.lag_target
    # Every change of the task count is a rebalance: scale out quickly, scale in slowly.
    scale_out_cooldown = var.scale_out_cooldown
    scale_in_cooldown  = var.scale_in_cooldown

    customized_metric_specification {
      namespace   = "AWS/Kafka"
      metric_name = var.lag_metric_name
      statistic   = "Maximum"

      dimensions {
        name  = "Cluster Name"
        value = local.msk_cluster_name
      }

      dimensions {
        name  = "Consumer Group"
        value = var.group_id
      }

      dimensions {
        name  = "Topic"
        value = var.topics.raw
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.scale_in_cooldown > var.scale_out_cooldown
      error_message = "scale_in_cooldown must be longer than scale_out_cooldown."
    }
  }
}
