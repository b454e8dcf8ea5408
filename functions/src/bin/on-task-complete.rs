//! The `on-task-complete` handler as an AWS Lambda function (`provided.al2023`);
//! all of it is in `ork-api`.

// One invocation at a time per execution environment: one thread serves
// it (no idle workers, each with its own allocator arena, in the billed memory).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ork_api::lambda::run(ork_api::lambda::Function::OnTaskComplete).await
}
