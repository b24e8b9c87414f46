package com.aliyun.fc.runtime;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** A handler that reads the event from a stream and writes its response to another. */
public interface StreamRequestHandler {

    /**
     * Handles one invocation.
     *
     * @param input the event's bytes
     * @param output where the response body goes
     * @param context the invocation's context
     * @throws IOException reported to the caller as an unhandled error
     */
    void handleRequest(InputStream input, OutputStream output, Context context) throws IOException;
}
