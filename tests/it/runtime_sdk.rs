//! The official Function Compute SDKs (aliyun-fc2 for Python, @alicloud/fc2 for Node.js) as clients of a
//! signed runtime: the scripts in tests/sdk/ create services and functions, invoke them sync and async, check
//! function errors, 404s and 429s, and delete everything. The SDKs are installed under cargo's temporary
//! folder, wherever the target folder is; the Node.js SDK signs every body with its Content-MD5.

use crate::support::runtime::{
    TestRuntime, install_node_sdk, install_python_sdk, run_sdk_script, test_dir,
};

#[tokio::test]
async fn python_sdk_drives_the_runtime() {
    tokio::task::spawn_blocking(install_python_sdk)
        .await
        .expect("install the Python SDK");
    let dir = test_dir("rt-sdk-python-");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("scratch folder");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        TestRuntime::signed(config);
        config.max_concurrency = 2;
    })
    .await;
    run_sdk_script(&rt, &work, "python3", "tests/sdk/python/test_sdk.py").await;
    rt.stop().await;
}

#[tokio::test]
async fn node_sdk_drives_the_runtime() {
    tokio::task::spawn_blocking(install_node_sdk)
        .await
        .expect("install the Node SDK");
    let dir = test_dir("rt-sdk-node-");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("scratch folder");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        TestRuntime::signed(config);
        config.max_concurrency = 2;
    })
    .await;
    run_sdk_script(&rt, &work, "node", "tests/sdk/node/test_sdk.js").await;
    rt.stop().await;
}
