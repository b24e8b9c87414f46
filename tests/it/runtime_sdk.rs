//! The official Function Compute SDKs (aliyun-fc2 for Python, @alicloud/fc2 for Node.js) as clients of a
//! signed runtime: the scripts in tests/sdk/ create services and functions, invoke them sync and async, check
//! function errors, 404s and 429s, and delete everything.

use crate::support::runtime::{
    TestRuntime, install_node_sdk, install_python_sdk, python_sdk_dir, run_sdk_script, test_dir,
    writable_dir,
};

#[tokio::test]
async fn python_sdk_drives_the_runtime() {
    tokio::task::spawn_blocking(install_python_sdk)
        .await
        .expect("install the Python SDK");
    let dir = test_dir("rt-sdk-python-");
    let markers = writable_dir(dir.path(), "markers");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        TestRuntime::signed(config);
        config.max_concurrency = 2;
    })
    .await;
    let sdk = python_sdk_dir();
    run_sdk_script(
        &rt,
        &markers,
        "python3",
        "tests/sdk/python/test_sdk.py",
        Some(&sdk),
    )
    .await;
    rt.stop().await;
}

#[tokio::test]
async fn node_sdk_drives_the_runtime() {
    tokio::task::spawn_blocking(install_node_sdk)
        .await
        .expect("install the Node SDK");
    let dir = test_dir("rt-sdk-node-");
    let markers = writable_dir(dir.path(), "markers");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        TestRuntime::signed(config);
        config.max_concurrency = 2;
    })
    .await;
    run_sdk_script(&rt, &markers, "node", "tests/sdk/node/test_sdk.js", None).await;
    rt.stop().await;
}
