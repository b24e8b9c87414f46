package example;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.StreamRequestHandler;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** Answers with what the context and the environment say, as `key=value` lines. */
public class ContextFC implements StreamRequestHandler {

    @Override
    public void handleRequest(InputStream input, OutputStream output, Context context) throws IOException {
        ByteArrayOutputStream event = new ByteArrayOutputStream();
        byte[] buffer = new byte[8192];
        for (int n; (n = input.read(buffer)) > 0; ) {
            event.write(buffer, 0, n);
        }
        StringBuilder out = new StringBuilder();
        line(out, "requestId", context.getRequestId());
        line(out, "function", context.getFunctionParam().getFunctionName());
        line(out, "handler", context.getFunctionParam().getFunctionHandler());
        line(out, "initializer", context.getFunctionParam().getFunctionInitializer());
        line(out, "memory", context.getFunctionParam().getMemoryLimitInMB());
        line(out, "timeoutMillis", context.getFunctionParam().getExecTimeLimitInMillis());
        line(out, "service", context.getService().getName());
        line(out, "qualifier", context.getService().getQualifier());
        line(out, "versionId", context.getService().getVersionId());
        line(out, "logProject", context.getService().getLogProject());
        line(out, "accessKeyId", context.getExecutionCredentials().getAccessKeyId());
        line(out, "retryCount", context.getRetryCount());
        line(out, "codePath", System.getenv("FC_FUNC_CODE_PATH"));
        line(out, "maxHeapMB", Runtime.getRuntime().maxMemory() / (1024 * 1024));
        line(out, "event", event.toString("UTF-8"));
        output.write(out.toString().getBytes("UTF-8"));
    }

    /** A handler under another method name. */
    public void other(InputStream input, OutputStream output, Context context) throws IOException {
        output.write("other method".getBytes("UTF-8"));
    }

    private static void line(StringBuilder out, String key, Object value) {
        out.append(key).append('=').append(value).append('\n');
    }
}
