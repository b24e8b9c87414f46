package com.aliyun.fc.runtime;

/** The settings of the function being run. */
public interface FunctionParam {

    /** The function's name. */
    public String getFunctionName();

    /** The handler, as configured (`package.Class::method`). */
    public String getFunctionHandler();

    /** The initializer, as configured, or null when the function has none. */
    public String getFunctionInitializer();

    /** The function's `timeout`, in milliseconds. */
    public int getExecTimeLimitInMillis();

    /** The function's `memorySize`, in MB. */
    public int getMemoryLimitInMB();
}
