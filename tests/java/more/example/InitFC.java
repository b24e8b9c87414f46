package example;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.FunctionInitializer;
import com.aliyun.fc.runtime.StreamRequestHandler;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** An initializer and a handler in one class: the handler sees what the initializer did, once per instance. */
public class InitFC implements StreamRequestHandler, FunctionInitializer {
    private static int initialized;
    private int calls;
    private String greeting = "not initialized";

    @Override
    public void initialize(Context context) throws IOException {
        initialized++;
        greeting = "ready";
        System.out.println("MARK init " + context.getRequestId());
        context.getLogger().info("initializer ran for " + context.getFunctionParam().getFunctionInitializer());
    }

    @Override
    public void handleRequest(InputStream input, OutputStream output, Context context) throws IOException {
        calls++;
        output.write((greeting + " init=" + initialized + " calls=" + calls).getBytes("UTF-8"));
    }

    /** An initializer that fails. */
    public void broken(Context context) throws IOException {
        throw new IOException("init failed");
    }
}
