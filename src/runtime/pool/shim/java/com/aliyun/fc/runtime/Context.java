package com.aliyun.fc.runtime;

/**
 * What a handler knows about its invocation: the request, the credentials of the service's role, the
 * function's and the service's settings, and a logger. Same methods as fc-java-core 1.x.
 */
public interface Context {

    /** The id of this invocation: the same `X-Fc-Request-Id` the caller got back. */
    public String getRequestId();

    /** Temporary credentials of the service's role; empty strings when the service has none. */
    public Credentials getExecutionCredentials();

    /** The function's name, handler, initializer, memory and time limit. */
    public FunctionParam getFunctionParam();

    /** The service's name, log project and store, and the qualifier and version of this call. */
    public Service getService();

    /** The logger whose lines carry the time, request id and level. */
    public FunctionComputeLogger getLogger();

    /** Tracing settings: never configured here (every getter answers null or an empty map). */
    public OpenTracing getTracing();

    /** How many times an asynchronous invocation was retried before this attempt (always 0 here). */
    public int getRetryCount();
}
