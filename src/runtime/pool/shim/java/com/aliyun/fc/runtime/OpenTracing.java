package com.aliyun.fc.runtime;

import java.util.Map;

/** Tracing settings of an invocation (tracing is not configured by this runtime). */
public interface OpenTracing {

    /** The span context, or null. */
    public String getSpanContext();

    /** The span baggages (empty). */
    public Map<String, String> getSpanBaggages();

    /** The Jaeger endpoint, or null. */
    public String getJaegerEndpoint();
}
