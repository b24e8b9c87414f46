package com.aliyun.fc.runtime;

import java.io.IOException;

/** An initializer: run once per instance, before its first invocation. */
public interface FunctionInitializer {

    /**
     * Prepares the instance.
     *
     * @param context the context of the invocation that started the instance
     * @throws IOException reported to the caller as an unhandled error; the instance is then replaced
     */
    void initialize(Context context) throws IOException;
}
