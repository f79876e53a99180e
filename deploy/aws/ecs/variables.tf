variable "name" {
  description = "Name of the service, task family, roles and log group."
  type        = string
  default     = "apono-connector"
}

variable "connector_id" {
  description = "The connector's id ([connector] id, APONO_CONNECTOR_ID)."
  type        = string
}

variable "image" {
  description = "The image built from deploy/Dockerfile, in a registry the task can pull from (ECR)."
  type        = string
}

variable "cluster_arn" {
  description = "The ECS cluster to run the service in."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of the subnets."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the tasks."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "true for subnets with an Internet Gateway, false for subnets behind a NAT Gateway."
  type        = bool
  default     = false
}

variable "desired_count" {
  description = "Replicas; they share the PostgreSQL store."
  type        = number
  default     = 1
}

variable "config_secret_arn" {
  description = "Secrets Manager secret holding the connector's TOML ([[users]], [[integrations]], [[access_flows]])."
  type        = string
}

variable "database_url_secret_arn" {
  description = "Secrets Manager secret holding the postgres:// URL. Required: Fargate storage is ephemeral, so SQLite would lose the grant ledger at every restart."
  type        = string
}

variable "master_key_secret_arn" {
  description = "Secrets Manager secret holding the connector's master key (64 hex digits, e.g. openssl rand -hex 32): it seals one-time credentials and keys the audit chain. Required with PostgreSQL: every task must hold the same key."
  type        = string
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory (MiB)."
  type        = number
  default     = 1024
}

variable "api_ingress_cidrs" {
  description = "Who may reach the API on port 8080."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
