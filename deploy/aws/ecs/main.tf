# The Apono connector on ECS Fargate: a task definition, its two roles, a log group, a
# security group and a service. The connector's configuration, its PostgreSQL URL and its master
# key come from Secrets Manager as environment variables; its own task role may read only
# secrets tagged apono-connector-read=true (../iam-policy.json). The configuration must set
# connector.tls_cert/tls_key or allow_insecure_listen = true (behind a TLS-terminating load
# balancer): the connector refuses plain HTTP on 0.0.0.0 otherwise.

data "aws_region" "current" {}

locals {
  # ECS injects these from Secrets Manager; the container writes the TOML to /tmp (a task
  # volume; the root filesystem is read-only) and starts the connector on it.
  secrets = [
    { name = "APONO_CONFIG_TOML", valueFrom = var.config_secret_arn },
    { name = "APONO_CONNECTOR_DATABASE_URL", valueFrom = var.database_url_secret_arn },
    { name = "APONO_MASTER_KEY", valueFrom = var.master_key_secret_arn },
  ]
  startup = "umask 077 && printf '%s' \"$APONO_CONFIG_TOML\" > /tmp/connector.toml && printf '%s' \"$APONO_MASTER_KEY\" > /tmp/master.key && unset APONO_CONFIG_TOML APONO_MASTER_KEY && APONO_CONNECTOR_MASTER_KEY_FILE=/tmp/master.key exec apono-connector run --config /tmp/connector.toml"
}

resource "aws_cloudwatch_log_group" "connector" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# The execution role: pulls the image, writes logs, and reads exactly the secrets above.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-startup-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [for s in local.secrets : s.valueFrom]
    }]
  })
}

# The task role: what the connector itself may do (read integration secrets tagged for it).
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task_read_tagged_secrets" {
  name   = "read-secrets-tagged-apono-connector-read"
  role   = aws_iam_role.task.id
  policy = file("${path.module}/../iam-policy.json")
}

resource "aws_security_group" "connector" {
  name        = var.name
  description = "Apono connector: API on 8080, any egress (targets and secret stores)"
  vpc_id      = var.vpc_id
  tags        = var.tags

  dynamic "ingress" {
    for_each = length(var.api_ingress_cidrs) == 0 ? [] : [1]
    content {
      description = "API"
      from_port   = 8080
      to_port     = 8080
      protocol    = "tcp"
      cidr_blocks = var.api_ingress_cidrs
    }
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "connector" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = var.tags

  volume {
    name = "tmp"
  }
  volume {
    name = "data"
  }

  container_definitions = jsonencode([{
    name                   = "connector"
    image                  = var.image
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    entryPoint             = ["/bin/sh", "-c"]
    command                = [local.startup]
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment = [
      { name = "APONO_CONNECTOR_ID", value = var.connector_id },
      { name = "APONO_CONNECTOR_LISTEN", value = "0.0.0.0:8080" },
      { name = "APONO_CONNECTOR_DATA_DIR", value = "/var/lib/apono-connector" },
    ]
    secrets = local.secrets
    mountPoints = [
      { sourceVolume = "tmp", containerPath = "/tmp" },
      { sourceVolume = "data", containerPath = "/var/lib/apono-connector" },
    ]
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || curl -fsSk -o /dev/null https://127.0.0.1:8080/healthz"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 10
    }
    linuxParameters = { capabilities = { drop = ["ALL"] } }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.connector.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "connector"
      }
    }
  }])
}

resource "aws_ecs_service" "connector" {
  name            = var.name
  cluster         = var.cluster_arn
  task_definition = aws_ecs_task_definition.connector.arn
  desired_count   = var.desired_count
  launch_type     = "FARGATE"
  tags            = var.tags

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.connector.id]
    assign_public_ip = var.assign_public_ip
  }

  lifecycle {
    precondition {
      condition     = var.desired_count >= 1
      error_message = "desired_count must be at least 1."
    }
  }
}
