package com.aliyun.fc.runtime;

import java.io.IOException;

/** A hook before an instance is frozen: accepted for compatibility, never called by this runtime. */
public interface PreFreezeHandler {

    /**
     * Would run before the instance is frozen.
     *
     * @param context the context
     * @throws IOException on failure
     */
    void preFreeze(Context context) throws IOException;
}
