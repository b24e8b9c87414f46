package chaintrigger.fc;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.Credentials;
import com.aliyun.fc.runtime.FunctionComputeLogger;
import com.aliyun.fc.runtime.FunctionParam;
import com.aliyun.fc.runtime.OpenTracing;
import com.aliyun.fc.runtime.Service;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Type;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;

/**
 * chaintrigger function runtime: the Java side of one handler instance.
 *
 * <p>Runs Function Compute Java handlers unchanged: a class implementing {@code StreamRequestHandler} or
 * {@code PojoRequestHandler<I, O>} named {@code package.Class::method}, an optional initializer
 * ({@code FunctionInitializer}, named the same way). The runtime talks to this process over two dedicated
 * pipes, never over stdout/stderr (those are the function's log): fd 3 carries frames from the runtime, fd 4
 * frames back. Java cannot use a descriptor by its number, so it opens them again through
 * {@code /proc/self/fd/3} and {@code /proc/self/fd/4} (the runtime makes both pipes the handler user's).
 *
 * <p>A frame is a 4-byte big-endian length of what follows, one kind byte, then the body: to here {@code S}
 * setup (JSON), {@code N} initialize (request id), {@code I} invoke (u16 id length, id, event); from here
 * {@code R} ready (once, after the setup), {@code O} success (raw body), {@code U} unhandled error (JSON),
 * {@code X} unhandled error after which the instance must be replaced (an OutOfMemoryError).
 */
public final class Worker {
    private static final String REQUESTS = "/proc/self/fd/3";
    private static final String RESPONSES = "/proc/self/fd/4";

    /** The invocation in progress: the logger writes it in every line. */
    static volatile String currentRequestId = "";

    private final Map<String, Object> setup;
    private final ClassLoader loader;
    private final Logger logger;
    private final OutputStream responses;
    /** One instance per handler class, shared by the initializer and the handler (state carries over). */
    private final Map<Class<?>, Object> instances = new HashMap<>();
    private Target handler;

    private Worker(Map<String, Object> setup, ClassLoader loader, Logger logger, OutputStream responses) {
        this.setup = setup;
        this.loader = loader;
        this.logger = logger;
        this.responses = responses;
    }

    public static void main(String[] args) throws Exception {
        DataInputStream requests = new DataInputStream(new FileInputStream(REQUESTS));
        OutputStream responses = new FileOutputStream(RESPONSES);
        PrintStream log = System.out;
        byte[][] frame = readFrame(requests);
        if (frame == null) {
            return;
        }
        if (frame[0][0] != 'S') {
            System.err.println("runtime protocol error: expected setup, got " + (char) frame[0][0]);
            System.exit(70);
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> setup = (Map<String, Object>) Json.parse(new String(frame[1], StandardCharsets.UTF_8));
        String codeDir = (String) setup.get("codeDir");
        ClassLoader loader = new URLClassLoader(classPath(new File(codeDir)), Worker.class.getClassLoader());
        Thread.currentThread().setContextClassLoader(loader);
        Worker worker = new Worker(setup, loader, new Logger(log), responses);
        worker.write('R', new byte[0]);
        while (true) {
            frame = readFrame(requests);
            if (frame == null) {
                return;
            }
            byte kind = frame[0][0];
            byte[] body = frame[1];
            if (kind == 'N') {
                currentRequestId = new String(body, StandardCharsets.UTF_8);
                worker.initialize();
            } else if (kind == 'I') {
                int idLength = ((body[0] & 0xff) << 8) | (body[1] & 0xff);
                currentRequestId = new String(body, 2, idLength, StandardCharsets.UTF_8);
                worker.invoke(Arrays.copyOfRange(body, 2 + idLength, body.length));
            } else {
                System.err.println("runtime protocol error: unknown frame " + (char) kind);
                System.exit(70);
            }
        }
    }

    /** The code folder itself (classes unpacked at its top), its jars, then the jars under lib/, each sorted. */
    static URL[] classPath(File code) throws IOException {
        List<URL> urls = new ArrayList<>();
        urls.add(code.toURI().toURL());
        for (File dir : new File[] {code, new File(code, "lib")}) {
            File[] files = dir.listFiles();
            if (files == null) {
                continue;
            }
            Arrays.sort(files);
            for (File file : files) {
                if (file.isFile() && file.getName().endsWith(".jar")) {
                    urls.add(file.toURI().toURL());
                }
            }
        }
        return urls.toArray(new URL[0]);
    }

    /** A frame as {kind, body}, or null at the end of the request pipe (the runtime went away). */
    private static byte[][] readFrame(DataInputStream in) throws IOException {
        int length;
        try {
            length = in.readInt();
        } catch (EOFException end) {
            return null;
        }
        if (length < 1) {
            throw new IOException("runtime protocol error: frame length " + length);
        }
        byte[] kind = new byte[1];
        byte[] body = new byte[length - 1];
        try {
            in.readFully(kind);
            in.readFully(body);
        } catch (EOFException end) {
            return null;
        }
        return new byte[][] {kind, body};
    }

    private void write(char kind, byte[] body) throws IOException {
        System.out.flush();
        System.err.flush();
        byte[] frame = new byte[5 + body.length];
        int length = body.length + 1;
        frame[0] = (byte) (length >>> 24);
        frame[1] = (byte) (length >>> 16);
        frame[2] = (byte) (length >>> 8);
        frame[3] = (byte) length;
        frame[4] = (byte) kind;
        System.arraycopy(body, 0, frame, 5, body.length);
        responses.write(frame);
        responses.flush();
    }

    private void initialize() throws IOException {
        try {
            Target initializer = resolve((String) setup.get("initializer"), true);
            initializer.call(null, context());
        } catch (Throwable error) {
            fail(error);
            return;
        }
        write('O', new byte[0]);
    }

    private void invoke(byte[] event) throws IOException {
        byte[] response;
        try {
            if (handler == null) {
                handler = resolve((String) setup.get("handler"), false);
            }
            response = handler.call(event, context());
        } catch (Throwable error) {
            fail(error);
            return;
        }
        write('O', response);
    }

    private void fail(Throwable error) throws IOException {
        if (error instanceof InvocationTargetException && error.getCause() != null) {
            error = error.getCause();
        }
        List<String> frames = userFrames(error);
        StringBuilder text = new StringBuilder(error.toString()).append('\n');
        for (String frame : frames) {
            text.append("\tat ").append(frame).append('\n');
        }
        System.err.print(text);
        Map<String, Object> body = new LinkedHashMap<>();
        String message = error.getMessage();
        body.put("errorMessage", message != null ? message : error.getClass().getName());
        body.put("errorType", error.getClass().getName());
        Throwable root = error;
        for (int guard = 0; guard < 64 && root.getCause() != null && root.getCause() != root; guard++) {
            root = root.getCause();
        }
        String cause = root.getMessage();
        body.put("errorCause", cause != null ? cause : root.getClass().getName());
        body.put("stackTrace", frames);
        byte[] json = Json.write(body).getBytes(StandardCharsets.UTF_8);
        // A JVM that ran out of memory may be broken in ways that show later: the instance is replaced.
        write(error instanceof OutOfMemoryError ? 'X' : 'U', json);
    }

    /**
     * The stack as the function's author sees it: the frames above this worker, without the reflection that
     * called the handler; written as {@code class.method(File.java:line)}.
     */
    static List<String> userFrames(Throwable error) {
        StackTraceElement[] stack = error.getStackTrace();
        int end = stack.length;
        for (int i = 0; i < stack.length; i++) {
            if (stack[i].getClassName().startsWith(Worker.class.getPackage().getName() + ".")) {
                end = i;
                break;
            }
        }
        while (end > 0 && reflection(stack[end - 1].getClassName())) {
            end--;
        }
        List<String> frames = new ArrayList<>();
        for (int i = 0; i < end; i++) {
            StackTraceElement frame = stack[i];
            String where = frame.isNativeMethod() ? "Native Method"
                    : frame.getFileName() == null ? "Unknown Source"
                    : frame.getLineNumber() >= 0 ? frame.getFileName() + ":" + frame.getLineNumber()
                    : frame.getFileName();
            frames.add(frame.getClassName() + "." + frame.getMethodName() + "(" + where + ")");
        }
        return frames;
    }

    private static boolean reflection(String className) {
        return className.startsWith("jdk.internal.reflect.") || className.startsWith("sun.reflect.")
                || className.startsWith("java.lang.reflect.");
    }

    private InvocationContext context() {
        return new InvocationContext(currentRequestId, setup, logger);
    }

    /** Finds {@code package.Class::method} in the function's code. */
    private Target resolve(String spec, boolean initializer) throws Exception {
        int colons = spec == null ? -1 : spec.indexOf("::");
        String example = initializer ? "example.HelloFC::initialize" : "example.HelloFC::handleRequest";
        if (colons <= 0 || colons + 2 >= spec.length() || spec.indexOf("::", colons + 2) >= 0) {
            throw new IllegalArgumentException("invalid " + (initializer ? "initializer" : "handler") + " '" + spec
                    + "': expected package.Class::method, e.g. " + example);
        }
        String className = spec.substring(0, colons);
        String methodName = spec.substring(colons + 2);
        Class<?> type;
        try {
            type = Class.forName(className, true, loader);
        } catch (ClassNotFoundException missing) {
            ClassNotFoundException error = new ClassNotFoundException("class " + className + " of '" + spec
                    + "' is not in the function's code (classes at its top, its *.jar or lib/*.jar)");
            error.setStackTrace(new StackTraceElement[0]);
            throw error;
        }
        List<Method> candidates = new ArrayList<>();
        for (Class<?> c = type; c != null && c != Object.class; c = c.getSuperclass()) {
            for (Method method : c.getDeclaredMethods()) {
                if (method.getName().equals(methodName) && !method.isBridge() && !method.isSynthetic()) {
                    candidates.add(method);
                }
            }
        }
        for (Method method : type.getMethods()) {
            if (method.getName().equals(methodName) && !method.isBridge() && !candidates.contains(method)) {
                candidates.add(method);
            }
        }
        Method found = null;
        Kind kind = null;
        for (Method method : candidates) {
            Class<?>[] parameters = method.getParameterTypes();
            Kind fits = null;
            if (initializer) {
                if (parameters.length == 1 && parameters[0] == Context.class) {
                    fits = Kind.INITIALIZER;
                }
            } else if (parameters.length == 3 && parameters[0] == InputStream.class
                    && parameters[1] == OutputStream.class && parameters[2] == Context.class) {
                fits = Kind.STREAM;
            } else if (parameters.length == 2 && parameters[1] == Context.class) {
                fits = Kind.POJO;
            }
            if (fits != null && (found == null || kind == Kind.POJO && fits == Kind.STREAM)) {
                found = method;
                kind = fits;
            }
        }
        if (found == null) {
            String expected = initializer ? methodName + "(Context)"
                    : methodName + "(InputStream, OutputStream, Context) or " + methodName + "(<input type>, Context)";
            throw new NoSuchMethodException("class " + className + " has no method " + expected);
        }
        found.setAccessible(true);
        Object target = null;
        if (!Modifier.isStatic(found.getModifiers())) {
            target = instances.get(type);
            if (target == null) {
                Constructor<?> constructor = type.getDeclaredConstructor();
                constructor.setAccessible(true);
                target = constructor.newInstance();
                instances.put(type, target);
            }
        }
        return new Target(found, kind, target, type);
    }

    private enum Kind {
        STREAM, POJO, INITIALIZER
    }

    /** A resolved handler or initializer: the method, how it is called, and the object it is called on. */
    private static final class Target {
        final Method method;
        final Kind kind;
        final Object instance;
        final Class<?> type;

        Target(Method method, Kind kind, Object instance, Class<?> type) {
            this.method = method;
            this.kind = kind;
            this.instance = instance;
            this.type = type;
        }

        byte[] call(byte[] event, Context context) throws Exception {
            switch (kind) {
                case INITIALIZER:
                    method.invoke(instance, context);
                    return new byte[0];
                case STREAM: {
                    ByteArrayOutputStream output = new ByteArrayOutputStream();
                    method.invoke(instance, new ByteArrayInputStream(event), output, context);
                    return output.toByteArray();
                }
                default: {
                    Type inputType = method.getGenericParameterTypes()[0];
                    Object input = pojoInput(event, inputType, type);
                    Object result = method.invoke(instance, input, context);
                    if (method.getReturnType() == void.class) {
                        return new byte[0];
                    }
                    return Json.write(result).getBytes(StandardCharsets.UTF_8);
                }
            }
        }
    }

    /**
     * The event of a POJO handler: JSON mapped to the input type. An empty event is null; a String input takes
     * the event's text as it is when the event is not a JSON string.
     */
    static Object pojoInput(byte[] event, Type inputType, Class<?> owner) {
        String text = new String(event, StandardCharsets.UTF_8);
        if (text.trim().isEmpty()) {
            return null;
        }
        Object parsed;
        try {
            parsed = Json.parse(text);
        } catch (IllegalArgumentException notJson) {
            if (Json.rawClass(inputType) == String.class) {
                return text;
            }
            throw new IllegalArgumentException(
                    "the event is not JSON for " + inputType.getTypeName() + ": " + notJson.getMessage(), notJson);
        }
        if (Json.rawClass(inputType) == String.class && !(parsed instanceof String)) {
            return text;
        }
        return Json.convert(parsed, inputType, owner);
    }

    /** {@code context.getLogger()}: one per instance, so a level set once stays set. */
    static final class Logger implements FunctionComputeLogger {
        private final PrintStream out;
        private final SimpleDateFormat format = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'");
        private volatile Level level = Level.TRACE;

        Logger(PrintStream out) {
            this.out = out;
            format.setTimeZone(TimeZone.getTimeZone("UTC"));
        }

        private void log(Level at, String message) {
            if (at.ordinal() < level.ordinal()) {
                return;
            }
            String line;
            synchronized (format) {
                line = format.format(new Date()) + " " + currentRequestId + " [" + at + "] " + message + "\n";
            }
            synchronized (out) {
                out.print(line);
                out.flush();
            }
        }

        @Override
        public void trace(String string) {
            log(Level.TRACE, string);
        }

        @Override
        public void debug(String string) {
            log(Level.DEBUG, string);
        }

        @Override
        public void info(String string) {
            log(Level.INFO, string);
        }

        @Override
        public void warn(String string) {
            log(Level.WARN, string);
        }

        @Override
        public void error(String string) {
            log(Level.ERROR, string);
        }

        @Override
        public void fatal(String string) {
            log(Level.FATAL, string);
        }

        @Override
        public void setLogLevel(Level level) {
            if (level != null) {
                this.level = level;
            }
        }
    }

    private static String text(Map<?, ?> map, String key) {
        Object value = map == null ? null : map.get(key);
        return value == null ? "" : value.toString();
    }

    private static int number(Map<?, ?> map, String key) {
        Object value = map == null ? null : map.get(key);
        return value instanceof Number ? ((Number) value).intValue() : 0;
    }

    /** The {@code context} of one invocation or initialization, from the setup frame. */
    static final class InvocationContext implements Context, Credentials, FunctionParam, Service, OpenTracing {
        private final String requestId;
        private final Map<?, ?> credentials;
        private final Map<?, ?> function;
        private final Map<?, ?> service;
        private final Logger logger;

        InvocationContext(String requestId, Map<String, Object> setup, Logger logger) {
            Map<?, ?> context = (Map<?, ?>) setup.get("context");
            this.requestId = requestId;
            this.credentials = (Map<?, ?>) context.get("credentials");
            this.function = (Map<?, ?>) context.get("function");
            this.service = (Map<?, ?>) context.get("service");
            this.logger = logger;
        }

        @Override
        public String getRequestId() {
            return requestId;
        }

        @Override
        public Credentials getExecutionCredentials() {
            return this;
        }

        @Override
        public FunctionParam getFunctionParam() {
            return this;
        }

        @Override
        public Service getService() {
            return this;
        }

        @Override
        public FunctionComputeLogger getLogger() {
            return logger;
        }

        @Override
        public OpenTracing getTracing() {
            return this;
        }

        @Override
        public int getRetryCount() {
            return 0;
        }

        @Override
        public String getAccessKeyId() {
            return text(credentials, "accessKeyId");
        }

        @Override
        public String getAccessKeySecret() {
            return text(credentials, "accessKeySecret");
        }

        @Override
        public String getSecurityToken() {
            return text(credentials, "securityToken");
        }

        @Override
        public String getFunctionName() {
            return text(function, "name");
        }

        @Override
        public String getFunctionHandler() {
            return text(function, "handler");
        }

        @Override
        public String getFunctionInitializer() {
            Object initializer = function == null ? null : function.get("initializer");
            return initializer == null ? null : initializer.toString();
        }

        @Override
        public int getExecTimeLimitInMillis() {
            return number(function, "timeout") * 1000;
        }

        @Override
        public int getMemoryLimitInMB() {
            return number(function, "memory");
        }

        @Override
        public String getName() {
            return text(service, "name");
        }

        @Override
        public String getLogProject() {
            return text(service, "logProject");
        }

        @Override
        public String getLogStore() {
            return text(service, "logStore");
        }

        @Override
        public String getQualifier() {
            return text(service, "qualifier");
        }

        @Override
        public String getVersionId() {
            return text(service, "versionId");
        }

        @Override
        public String getSpanContext() {
            return null;
        }

        @Override
        public Map<String, String> getSpanBaggages() {
            return Collections.emptyMap();
        }

        @Override
        public String getJaegerEndpoint() {
            return null;
        }
    }
}
