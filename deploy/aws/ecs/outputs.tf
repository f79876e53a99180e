output "task_role_arn" {
  description = "The connector's own role (reads only secrets tagged apono-connector-read=true)."
  value       = aws_iam_role.task.arn
}

output "service_name" {
  description = "The ECS service."
  value       = aws_ecs_service.connector.name
}

output "log_group" {
  description = "The CloudWatch log group of the connector."
  value       = aws_cloudwatch_log_group.connector.name
}
