package com.aliyun.fc.runtime;

import java.io.IOException;

/** A hook before an instance stops: accepted for compatibility, never called by this runtime. */
public interface PreStopHandler {

    /**
     * Would run before the instance stops.
     *
     * @param context the context
     * @throws IOException on failure
     */
    void preStop(Context context) throws IOException;
}
