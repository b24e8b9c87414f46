package com.aliyun.fc.runtime;

/** The service the function belongs to, and the qualifier the call named. */
public interface Service {

    /** The service's name. */
    public String getName();

    /** The service's log project (empty when it has none). */
    public String getLogProject();

    /** The service's log store (empty when it has none). */
    public String getLogStore();

    /** The qualifier the call resolved to: LATEST, a version or an alias. */
    public String getQualifier();

    /** The version that runs, when the qualifier names one (empty for LATEST). */
    public String getVersionId();
}
