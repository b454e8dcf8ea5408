//! The `on-task-complete` handler as an AWS Lambda function (`provided.al2023`);
//! all of it is in `ork-api`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ork_api::lambda::run(ork_api::lambda::Function::OnTaskComplete).await
}
