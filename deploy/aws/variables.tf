# ---------------------------------------------------------------------------------------
# Where it runs
# ---------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region of the ECS cluster and the MSK cluster."
  type        = string
}

variable "name" {
  description = "Name of the service, the task definition families, the log group and the roles."
  type        = string
  default     = "eeg-pipeline"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_-]{0,31}$", var.name))
    error_message = "name: letters, digits, '-' and '_', starting with a letter, at most 32 characters (IAM role names are built from it)."
  }
}

variable "image" {
  description = "Image built from deploy/Dockerfile, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/eeg-pipeline:1.2.3."
  type        = string
}

variable "cpu_architecture" {
  description = "CPU architecture the image was built for: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ecs_cluster_name" {
  description = "Name of the existing ECS cluster the service runs in."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks (the MSK cluster's VPC, or one routed to it)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the tasks: private subnets that reach the brokers, and ECR, CloudWatch Logs and STS (NAT or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "assign_public_ip" {
  description = "Give the tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource (provider default_tags); ECS propagates the service's tags to its tasks."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------
# Kafka (MSK)
# ---------------------------------------------------------------------------------------

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster (provisioned or Serverless): arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID. Topic and group ARNs of the IAM policies, and the lag metric's cluster name, are derived from it."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[^/]+/[^/]+$", var.msk_cluster_arn))
    error_message = "msk_cluster_arn must look like arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID."
  }
}

variable "kafka_bootstrap_servers" {
  description = "KAFKA_BOOTSTRAP_SERVERS: the cluster's bootstrap brokers for the chosen authentication, comma-separated host:port (port 9098 for IAM, 9096 for SCRAM)."
  type        = string

  validation {
    condition     = can(regex("^[^,:\\s]+:[0-9]+(,[^,:\\s]+:[0-9]+)*$", var.kafka_bootstrap_servers))
    error_message = "kafka_bootstrap_servers must be comma-separated host:port pairs."
  }
}

variable "kafka_auth" {
  description = "How the tasks authenticate to MSK: \"iam\" (SASL_SSL with AWS_MSK_IAM and the task role; the only choice on MSK Serverless) or \"scram\" (SASL_SSL with SCRAM-SHA-512, credentials from Secrets Manager or SSM)."
  type        = string
  default     = "iam"

  validation {
    condition     = contains(["iam", "scram"], var.kafka_auth)
    error_message = "kafka_auth must be \"iam\" or \"scram\"."
  }
}

variable "kafka_port" {
  description = "Broker port the tasks may reach: 9098 for IAM, 9096 for SCRAM. Must match the ports in kafka_bootstrap_servers."
  type        = number
  default     = 9098

  validation {
    condition     = var.kafka_port >= 1 && var.kafka_port <= 65535 && floor(var.kafka_port) == var.kafka_port
    error_message = "kafka_port must be a TCP port."
  }
}

variable "msk_security_group_id" {
  description = "Security group of the MSK cluster. When set, the tasks' egress to kafka_port goes to it (and, with add_msk_ingress_rule, it gets an inbound rule from the tasks)."
  type        = string
  default     = null
}

variable "add_msk_ingress_rule" {
  description = "Add an inbound rule for kafka_port from the tasks' security group to msk_security_group_id. Turn off when the MSK cluster's rules are managed elsewhere."
  type        = bool
  default     = true
}

variable "kafka_cidr_blocks" {
  description = "IPv4 CIDR blocks of the brokers (e.g. the VPC CIDR), for egress to kafka_port when msk_security_group_id is not set."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.kafka_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "kafka_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "https_cidr_blocks" {
  description = "IPv4 CIDR blocks the tasks may reach on 443: ECR, CloudWatch Logs and STS, through NAT (0.0.0.0/0) or VPC endpoints (the VPC CIDR)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "https_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "kafka_sasl_username_arn" {
  description = "With kafka_auth = \"scram\": ARN of the Secrets Manager secret (optionally with a JSON key, ARN:username::) or SSM parameter holding KAFKA_SASL_USERNAME."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_sasl_username_arn == null || can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):", var.kafka_sasl_username_arn))
    error_message = "kafka_sasl_username_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "kafka_sasl_password_arn" {
  description = "With kafka_auth = \"scram\": ARN of the Secrets Manager secret (optionally with a JSON key, ARN:password::) or SSM parameter (SecureString) holding KAFKA_SASL_PASSWORD."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_sasl_password_arn == null || can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):", var.kafka_sasl_password_arn))
    error_message = "kafka_sasl_password_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "secrets_kms_key_arn" {
  description = "Customer managed KMS key that encrypts the SCRAM secrets or the Redis password, if any (the execution role gets kms:Decrypt on it). Not needed for AWS managed keys."
  type        = string
  default     = null
}

variable "kafka_ssl_ca_location" {
  description = "KAFKA_SSL_CA_LOCATION: CA bundle path inside the image; null uses the system CAs (enough for MSK)."
  type        = string
  default     = null
}

variable "kafka_connect_timeout_s" {
  description = "KAFKA_CONNECT_TIMEOUT_S: bound on each wait for the broker, in seconds."
  type        = number
  default     = 5

  validation {
    condition     = var.kafka_connect_timeout_s >= 1
    error_message = "kafka_connect_timeout_s must be at least 1."
  }
}

variable "group_id" {
  description = "KAFKA_GROUP_ID: the consumer group; every task shares the raw topic's partitions through it. ASCII without ':' so that MSK publishes its lag metrics."
  type        = string
  default     = "eeg-pipeline"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.group_id))
    error_message = "group_id: ASCII letters, digits, '.', '_' and '-' (MSK drops lag metrics of groups with ':' or non-ASCII names)."
  }
}

variable "topics" {
  description = "Topic names (EEG_RAW_TOPIC, EEG_PROCESSED_TOPIC, EEG_TRIGGERS_TOPIC, EEG_DLQ_TOPIC, EEG_STATE_TOPIC)."
  type = object({
    raw       = optional(string, "eeg.raw.data")
    processed = optional(string, "eeg.processed.data")
    triggers  = optional(string, "analytics.triggers")
    dlq       = optional(string, "eeg.raw.data.dlq")
    state     = optional(string, "eeg.session.state")
  })
  default = {}

  validation {
    condition     = alltrue([for t in values(var.topics) : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "Topic names: letters, digits, '.', '_' and '-', at most 249 characters."
  }
}

variable "raw_topic_partitions" {
  description = "Partitions of the raw topic (the topics task creates this many; the state topic gets the same). Caps max_count."
  type        = number
  default     = 3

  validation {
    condition     = var.raw_topic_partitions >= 1 && floor(var.raw_topic_partitions) == var.raw_topic_partitions
    error_message = "raw_topic_partitions must be a whole number of at least 1."
  }
}

# ---------------------------------------------------------------------------------------
# Redis (ElastiCache): an optional cache of what Kafka holds
# ---------------------------------------------------------------------------------------

variable "redis_url" {
  description = "REDIS_URL: redis://HOST:PORT, or rediss://HOST:PORT with in-transit encryption; for a cluster, its configuration endpoint (clustercfg.NAME.ID.REGION.cache.amazonaws.com:6379). No password in it: that comes from redis_password_secret_arn. Empty: no Redis."
  type        = string
  default     = ""

  validation {
    condition     = var.redis_url == "" || can(regex("^rediss?://([^:@/\\s]+@)?[^:@/\\s]+(:[0-9]+)?/?$", var.redis_url))
    error_message = "redis_url must be redis://HOST:PORT or rediss://HOST:PORT (optionally USER@HOST), without a password: give that as redis_password_secret_arn."
  }
}

variable "redis_cluster" {
  description = "REDIS_CLUSTER: Redis runs in cluster mode (an ElastiCache configuration endpoint). Off for a cluster-mode-disabled replication group's primary endpoint."
  type        = bool
  default     = true
}

variable "redis_username" {
  description = "REDIS_USERNAME: ElastiCache RBAC user, if any. Empty: the default user (AUTH with the password only)."
  type        = string
  default     = ""
}

variable "redis_password_secret_arn" {
  description = "ARN of the Secrets Manager secret (optionally with a JSON key, ARN:password::) or SSM parameter (SecureString) holding REDIS_PASSWORD, the AUTH token or RBAC password. Empty: no password."
  type        = string
  default     = ""

  validation {
    condition     = var.redis_password_secret_arn == "" || can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):", var.redis_password_secret_arn))
    error_message = "redis_password_secret_arn must be a Secrets Manager secret ARN or an SSM parameter ARN."
  }
}

variable "redis_port" {
  description = "Port of Redis the tasks may reach. Must match the port in redis_url."
  type        = number
  default     = 6379

  validation {
    condition     = var.redis_port >= 1 && var.redis_port <= 65535 && floor(var.redis_port) == var.redis_port
    error_message = "redis_port must be a TCP port."
  }
}

variable "redis_security_group_id" {
  description = "Security group of the ElastiCache cluster. Needed with redis_url: the tasks' egress to redis_port goes to it (and, with add_redis_ingress_rule, it gets an inbound rule from the tasks)."
  type        = string
  default     = ""
}

variable "add_redis_ingress_rule" {
  description = "Add an inbound rule for redis_port from the tasks' security group to redis_security_group_id. Turn off when the cache's rules are managed elsewhere."
  type        = bool
  default     = true
}

variable "redis_required" {
  description = "REDIS_REQUIRED: readiness depends on Redis. Off: the service stays ready and keeps processing while Redis is down."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------
# The service's settings (docs/service.md; defaults are the service's own)
# ---------------------------------------------------------------------------------------

variable "config_path" {
  description = "EEG_CONFIG: processing and trigger config (TOML) inside the image; null uses the built-in defaults."
  type        = string
  default     = null
}

variable "session_idle_s" {
  description = "SESSION_IDLE_S: sessions without a message for this long are dropped."
  type        = number
  default     = 300

  validation {
    condition     = var.session_idle_s >= 1
    error_message = "session_idle_s must be at least 1."
  }
}

variable "shutdown_timeout_s" {
  description = "SHUTDOWN_TIMEOUT_S: time to finish, flush and commit after SIGTERM. Must stay at least 5 s below stop_timeout."
  type        = number
  default     = 20

  validation {
    condition     = var.shutdown_timeout_s >= 1
    error_message = "shutdown_timeout_s must be at least 1."
  }
}

variable "partition_queue" {
  description = "EEG_PARTITION_QUEUE: messages fetched ahead for each partition before librdkafka waits for its worker."
  type        = number
  default     = 1000

  validation {
    condition     = var.partition_queue >= 1
    error_message = "partition_queue must be at least 1."
  }
}

variable "partition_buffer_kib" {
  description = "EEG_PARTITION_BUFFER_KIB: KiB fetched ahead for each partition before librdkafka waits for its worker."
  type        = number
  default     = 8192

  validation {
    condition     = var.partition_buffer_kib >= 1
    error_message = "partition_buffer_kib must be at least 1."
  }
}

variable "status_interval_s" {
  description = "EEG_STATUS_INTERVAL_S: seconds between status lines in the log (0: none)."
  type        = number
  default     = 60

  validation {
    condition     = var.status_interval_s >= 0
    error_message = "status_interval_s must not be negative."
  }
}

variable "http_port" {
  description = "Port of /health/live, /health/ready, /health and /metrics (HTTP_ADDR is 0.0.0.0:PORT)."
  type        = number
  default     = 8080

  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535
    error_message = "http_port must be between 1024 and 65535 (the image runs as a non-root user)."
  }
}

variable "rust_log" {
  description = "RUST_LOG: log level or filter."
  type        = string
  default     = "info"
}

# ---------------------------------------------------------------------------------------
# Task and container
# ---------------------------------------------------------------------------------------

variable "cpu" {
  description = "Task CPU units (Fargate: 256, 512, 1024, 2048, 4096, ...)."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory in MiB, a valid Fargate combination with cpu. Plan for the session state, up to 16 MiB of prefetched messages and partition_buffer_kib per assigned partition."
  type        = number
  default     = 1024
}

variable "stop_timeout" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL (Fargate allows up to 120)."
  type        = number
  default     = 60

  validation {
    condition     = var.stop_timeout >= 2 && var.stop_timeout <= 120
    error_message = "stop_timeout must be between 2 and 120 seconds on Fargate."
  }
}

variable "health_check" {
  description = "Container health check timing, in seconds (the command is `eeg-pipeline healthcheck`, which waits at most 2 s). start_period covers connecting, the topic check and the first assignment."
  type = object({
    interval     = optional(number, 15)
    timeout      = optional(number, 5)
    retries      = optional(number, 3)
    start_period = optional(number, 60)
  })
  default = {}

  validation {
    condition = (
      var.health_check.interval >= 5 && var.health_check.interval <= 300 &&
      var.health_check.timeout >= 2 && var.health_check.timeout <= 60 &&
      var.health_check.retries >= 1 && var.health_check.retries <= 10 &&
      var.health_check.start_period >= 0 && var.health_check.start_period <= 300
    )
    error_message = "health_check: interval 5-300, timeout 2-60, retries 1-10, start_period 0-300 (ECS limits)."
  }
}

variable "log_retention_days" {
  description = "Retention of the log group, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "enable_execute_command" {
  description = "Allow ECS Exec into the tasks. ECS Exec needs a writable root file system, so turning it on also turns readonlyRootFilesystem off."
  type        = bool
  default     = false
}

variable "http_ingress_cidr_blocks" {
  description = "IPv4 CIDR blocks allowed to reach http_port (health and metrics, e.g. a Prometheus scraper). Empty: no inbound rule."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.http_ingress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "http_ingress_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "http_ingress_security_group_ids" {
  description = "Security groups allowed to reach http_port. Empty: no inbound rule."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------
# Scaling and deployment
# ---------------------------------------------------------------------------------------

variable "min_count" {
  description = "Fewest tasks (also the desired count at creation)."
  type        = number
  default     = 1

  validation {
    condition     = var.min_count >= 1 && floor(var.min_count) == var.min_count
    error_message = "min_count must be a whole number of at least 1."
  }
}

variable "max_count" {
  description = "Most tasks. At most raw_topic_partitions: each partition is consumed by one task of the group, so tasks beyond the partition count get no partition and sit idle."
  type        = number
  default     = 3

  validation {
    condition     = var.max_count >= 1 && floor(var.max_count) == var.max_count
    error_message = "max_count must be a whole number of at least 1."
  }
}

variable "autoscaling_enabled" {
  description = "Scale the task count between min_count and max_count on the consumer group's lag."
  type        = bool
  default     = true
}

variable "lag_metric_name" {
  description = "MSK consumer lag metric to track (namespace AWS/Kafka, dimensions Cluster Name, Consumer Group, Topic): SumOffsetLag (all partitions) or MaxOffsetLag (the worst partition)."
  type        = string
  default     = "SumOffsetLag"

  validation {
    condition     = contains(["SumOffsetLag", "MaxOffsetLag"], var.lag_metric_name)
    error_message = "lag_metric_name must be SumOffsetLag or MaxOffsetLag."
  }
}

variable "lag_target" {
  description = "Target value of the lag metric, in messages: more tasks above it, fewer below it."
  type        = number
  default     = 1000

  validation {
    condition     = var.lag_target > 0
    error_message = "lag_target must be positive."
  }
}

variable "scale_out_cooldown" {
  description = "Seconds after a scale-out before another one."
  type        = number
  default     = 60

  validation {
    condition     = var.scale_out_cooldown >= 0
    error_message = "scale_out_cooldown must not be negative."
  }
}

variable "scale_in_cooldown" {
  description = "Seconds after a scale-in before another one; longer than scale_out_cooldown, since every change of the task count is a rebalance of the group."
  type        = number
  default     = 600

  validation {
    condition     = var.scale_in_cooldown >= 0
    error_message = "scale_in_cooldown must not be negative."
  }
}

variable "deployment_minimum_healthy_percent" {
  description = "Lower limit of running tasks during a deployment, in percent of the desired count."
  type        = number
  default     = 100
}

variable "deployment_maximum_percent" {
  description = "Upper limit of running tasks during a deployment, in percent of the desired count (new tasks start, join the group and take partitions before old ones stop)."
  type        = number
  default     = 200

  validation {
    condition     = var.deployment_maximum_percent >= 100
    error_message = "deployment_maximum_percent must be at least 100."
  }
}

variable "create_topics_task" {
  description = "Create the one-shot `topics create` task definition (with its own role, allowed to create the topics) to run once before the service."
  type        = bool
  default     = true
}
