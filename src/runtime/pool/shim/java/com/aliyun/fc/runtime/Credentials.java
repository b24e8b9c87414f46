package com.aliyun.fc.runtime;

/** Temporary credentials of the service's role (empty strings when the service has no role). */
public interface Credentials {

    /** The access key id. */
    public String getAccessKeyId();

    /** The access key secret. */
    public String getAccessKeySecret();

    /** The STS security token. */
    public String getSecurityToken();
}
