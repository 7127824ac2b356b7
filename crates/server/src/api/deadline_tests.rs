//! The request deadline, and the routes it leaves alone.

use super::*;
use tower::ServiceExt;

async fn slow() -> &'static str {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    "done"
}

#[tokio::test]
async fn a_key_rotation_outlasts_the_request_deadline_and_nothing_else_does() {
    let paths = [
        "/v1/keys/rotate",
        "/v1/keys/rotate-master",
        "/v1/events",
        "/v1/keys/rotate/x",
    ];
    let app = paths
        .iter()
        .fold(Router::new(), |app, path| app.route(path, post(slow)))
        .layer(axum::middleware::from_fn(|req, next| {
            deadline(std::time::Duration::from_millis(50), req, next)
        }));
    let status = |path: &'static str| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post(path).body(Body::empty()).unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(status("/v1/keys/rotate").await, StatusCode::OK);
    assert_eq!(status("/v1/keys/rotate-master").await, StatusCode::OK);
    assert_eq!(status("/v1/events").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        status("/v1/keys/rotate/x").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
