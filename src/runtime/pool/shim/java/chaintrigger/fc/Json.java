package chaintrigger.fc;

import java.lang.reflect.Array;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.Date;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SortedMap;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The JSON of POJO handlers, without a library: parses text into plain values (LinkedHashMap, ArrayList,
 * String, Integer / Long / BigInteger / Double, Boolean, null), maps them onto a target type, and writes
 * objects back.
 *
 * <p>Mapping in: beans (a no-argument constructor, of any visibility; each key through a setter {@code setKey}
 * or else a field {@code key}; unknown keys ignored), {@code Map<String or number or enum, V>}, {@code List},
 * {@code Set}, {@code Collection}, arrays, {@code Optional}, String, char, every primitive and its box,
 * BigInteger, BigDecimal, enums (by name), Object (the plain value). Numbers in strings are accepted for
 * number targets. Type variables are resolved against the handler's class where its declarations say them.
 *
 * <p>Writing out: null, strings, numbers, booleans, enums (name), maps (keys as strings), iterables and
 * arrays, byte[] (base64), Optional, Date (epoch milliseconds), other JDK classes by {@code toString()},
 * beans by their getters ({@code getX} / {@code isX}) and their other non-static, non-transient fields.
 *
 * <p>Not supported: annotations of Jackson or Gson (names are the Java names), polymorphic types, records'
 * canonical constructors (a record needs its fields set, which Java forbids), cyclic object graphs (refused),
 * nesting deeper than {@link #MAX_DEPTH}.
 */
final class Json {
    /** Deeper nesting is refused, in and out: hostile events must not overflow the stack. */
    static final int MAX_DEPTH = 512;

    private Json() {}

    // ---------------------------------------------------------------- parsing

    /** Parses one JSON text into plain values. */
    static Object parse(String text) {
        Parser parser = new Parser(text);
        parser.skipSpace();
        Object value = parser.value(0);
        parser.skipSpace();
        if (parser.at < text.length()) {
            throw parser.error("unexpected text after the JSON value");
        }
        return value;
    }

    private static final class Parser {
        final String text;
        int at;

        Parser(String text) {
            this.text = text;
        }

        IllegalArgumentException error(String what) {
            return new IllegalArgumentException("invalid JSON at offset " + at + ": " + what);
        }

        void skipSpace() {
            while (at < text.length()) {
                char c = text.charAt(at);
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    at++;
                } else {
                    break;
                }
            }
        }

        Object value(int depth) {
            if (depth > MAX_DEPTH) {
                throw error("nested deeper than " + MAX_DEPTH + " levels");
            }
            if (at >= text.length()) {
                throw error("unexpected end of input");
            }
            char c = text.charAt(at);
            switch (c) {
                case '{':
                    return object(depth);
                case '[':
                    return array(depth);
                case '"':
                    return string();
                case 't':
                    return word("true", Boolean.TRUE);
                case 'f':
                    return word("false", Boolean.FALSE);
                case 'n':
                    return word("null", null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return number();
                    }
                    throw error("unexpected character '" + c + "'");
            }
        }

        Object word(String word, Object value) {
            if (!text.startsWith(word, at)) {
                throw error("expected " + word);
            }
            at += word.length();
            return value;
        }

        Map<String, Object> object(int depth) {
            Map<String, Object> map = new LinkedHashMap<>();
            at++;
            skipSpace();
            if (at < text.length() && text.charAt(at) == '}') {
                at++;
                return map;
            }
            while (true) {
                skipSpace();
                if (at >= text.length() || text.charAt(at) != '"') {
                    throw error("expected a string key");
                }
                String key = string();
                skipSpace();
                if (at >= text.length() || text.charAt(at) != ':') {
                    throw error("expected ':'");
                }
                at++;
                skipSpace();
                map.put(key, value(depth + 1));
                skipSpace();
                if (at >= text.length()) {
                    throw error("unexpected end of input in an object");
                }
                char c = text.charAt(at++);
                if (c == '}') {
                    return map;
                }
                if (c != ',') {
                    at--;
                    throw error("expected ',' or '}'");
                }
            }
        }

        List<Object> array(int depth) {
            List<Object> list = new ArrayList<>();
            at++;
            skipSpace();
            if (at < text.length() && text.charAt(at) == ']') {
                at++;
                return list;
            }
            while (true) {
                skipSpace();
                list.add(value(depth + 1));
                skipSpace();
                if (at >= text.length()) {
                    throw error("unexpected end of input in an array");
                }
                char c = text.charAt(at++);
                if (c == ']') {
                    return list;
                }
                if (c != ',') {
                    at--;
                    throw error("expected ',' or ']'");
                }
            }
        }

        String string() {
            at++;
            StringBuilder out = new StringBuilder();
            while (true) {
                if (at >= text.length()) {
                    throw error("unterminated string");
                }
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c < 0x20) {
                    at--;
                    throw error("control character in a string");
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                if (at >= text.length()) {
                    throw error("unterminated escape");
                }
                char e = text.charAt(at++);
                switch (e) {
                    case '"':
                    case '\\':
                    case '/':
                        out.append(e);
                        break;
                    case 'b':
                        out.append('\b');
                        break;
                    case 'f':
                        out.append('\f');
                        break;
                    case 'n':
                        out.append('\n');
                        break;
                    case 'r':
                        out.append('\r');
                        break;
                    case 't':
                        out.append('\t');
                        break;
                    case 'u':
                        if (at + 4 > text.length()) {
                            throw error("short \\u escape");
                        }
                        try {
                            out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        } catch (NumberFormatException bad) {
                            throw error("bad \\u escape");
                        }
                        at += 4;
                        break;
                    default:
                        at--;
                        throw error("unknown escape '\\" + e + "'");
                }
            }
        }

        Object number() {
            int start = at;
            if (text.charAt(at) == '-') {
                at++;
            }
            int digits = at;
            while (at < text.length() && Character.isDigit(text.charAt(at))) {
                at++;
            }
            if (at == digits) {
                throw error("expected a digit");
            }
            boolean integral = true;
            if (at < text.length() && text.charAt(at) == '.') {
                integral = false;
                at++;
                int fraction = at;
                while (at < text.length() && Character.isDigit(text.charAt(at))) {
                    at++;
                }
                if (at == fraction) {
                    throw error("expected a digit after '.'");
                }
            }
            if (at < text.length() && (text.charAt(at) == 'e' || text.charAt(at) == 'E')) {
                integral = false;
                at++;
                if (at < text.length() && (text.charAt(at) == '+' || text.charAt(at) == '-')) {
                    at++;
                }
                int exponent = at;
                while (at < text.length() && Character.isDigit(text.charAt(at))) {
                    at++;
                }
                if (at == exponent) {
                    throw error("expected a digit in the exponent");
                }
            }
            String literal = text.substring(start, at);
            if (!integral) {
                return Double.valueOf(literal);
            }
            BigInteger big = new BigInteger(literal);
            if (big.bitLength() < 32) {
                return big.intValue();
            }
            if (big.bitLength() < 64) {
                return big.longValue();
            }
            return big;
        }
    }

    // ---------------------------------------------------------------- mapping onto types

    /** Maps a plain value onto {@code type}; {@code owner} resolves type variables of the handler's class. */
    static Object convert(Object value, Type type, Class<?> owner) {
        return convert(value, type, owner, "$", 0);
    }

    private static IllegalArgumentException mismatch(String path, Object value, Type type) {
        String what = value == null ? "null" : value instanceof Map ? "an object" : value instanceof List ? "an array"
                : value instanceof String ? "a string" : value instanceof Boolean ? "a boolean" : "a number";
        return new IllegalArgumentException(
                "cannot map " + what + " at " + path + " to " + type.getTypeName());
    }

    private static Object convert(Object value, Type type, Class<?> owner, String path, int depth) {
        if (depth > MAX_DEPTH) {
            throw new IllegalArgumentException("nested deeper than " + MAX_DEPTH + " levels at " + path);
        }
        if (type instanceof TypeVariable) {
            type = resolve((TypeVariable<?>) type, owner);
        }
        if (type instanceof WildcardType) {
            Type[] upper = ((WildcardType) type).getUpperBounds();
            type = upper.length > 0 ? upper[0] : Object.class;
        }
        Class<?> raw = rawClass(type);
        if (raw == Optional.class) {
            Type inner = type instanceof ParameterizedType ? ((ParameterizedType) type).getActualTypeArguments()[0]
                    : Object.class;
            return Optional.ofNullable(value == null ? null : convert(value, inner, owner, path, depth + 1));
        }
        if (value == null) {
            if (raw.isPrimitive()) {
                throw mismatch(path, null, type);
            }
            return null;
        }
        if (raw == Object.class) {
            return value;
        }
        if (raw == String.class || raw == CharSequence.class) {
            if (value instanceof String || value instanceof Number || value instanceof Boolean) {
                return value.toString();
            }
            throw mismatch(path, value, type);
        }
        if (raw == boolean.class || raw == Boolean.class) {
            if (value instanceof Boolean) {
                return value;
            }
            if ("true".equals(value) || "false".equals(value)) {
                return Boolean.valueOf((String) value);
            }
            throw mismatch(path, value, type);
        }
        if (raw == char.class || raw == Character.class) {
            if (value instanceof String && ((String) value).length() == 1) {
                return ((String) value).charAt(0);
            }
            throw mismatch(path, value, type);
        }
        if (raw.isPrimitive() || Number.class.isAssignableFrom(raw)) {
            return number(value, raw, type, path);
        }
        if (raw.isEnum()) {
            if (value instanceof String) {
                for (Object constant : raw.getEnumConstants()) {
                    if (((Enum<?>) constant).name().equals(value)) {
                        return constant;
                    }
                }
            }
            throw new IllegalArgumentException(
                    "cannot map " + value + " at " + path + " to the enum " + raw.getName());
        }
        if (raw.isArray()) {
            if (raw == byte[].class && value instanceof String) {
                return Base64.getDecoder().decode((String) value);
            }
            if (!(value instanceof List)) {
                throw mismatch(path, value, type);
            }
            Type component = type instanceof GenericArrayType ? ((GenericArrayType) type).getGenericComponentType()
                    : raw.getComponentType();
            List<?> list = (List<?>) value;
            Object array = Array.newInstance(rawClass(component), list.size());
            for (int i = 0; i < list.size(); i++) {
                Array.set(array, i, convert(list.get(i), component, owner, path + "[" + i + "]", depth + 1));
            }
            return array;
        }
        if (Collection.class.isAssignableFrom(raw)) {
            if (!(value instanceof List)) {
                throw mismatch(path, value, type);
            }
            Type element = typeArgument(type, 0);
            Collection<Object> collection = newCollection(raw, type);
            List<?> list = (List<?>) value;
            for (int i = 0; i < list.size(); i++) {
                collection.add(convert(list.get(i), element, owner, path + "[" + i + "]", depth + 1));
            }
            return collection;
        }
        if (Map.class.isAssignableFrom(raw)) {
            if (!(value instanceof Map)) {
                throw mismatch(path, value, type);
            }
            Type keyType = typeArgument(type, 0);
            Type valueType = typeArgument(type, 1);
            Map<Object, Object> map = newMap(raw, type);
            for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                String key = (String) entry.getKey();
                Object mappedKey = convert(key, keyType, owner, path + "." + key, depth + 1);
                map.put(mappedKey, convert(entry.getValue(), valueType, owner, path + "." + key, depth + 1));
            }
            return map;
        }
        if (!(value instanceof Map)) {
            throw mismatch(path, value, type);
        }
        return bean((Map<?, ?>) value, raw, path, depth);
    }

    private static Object number(Object value, Class<?> raw, Type type, String path) {
        Number number;
        if (value instanceof Number) {
            number = (Number) value;
        } else if (value instanceof String) {
            try {
                number = new BigDecimal(((String) value).trim());
            } catch (NumberFormatException bad) {
                throw mismatch(path, value, type);
            }
        } else {
            throw mismatch(path, value, type);
        }
        if (number instanceof Double && (((Double) number).isNaN() || ((Double) number).isInfinite())
                && raw != double.class && raw != Double.class && raw != Number.class) {
            throw new IllegalArgumentException(
                    "cannot map " + number + " at " + path + " to " + raw.getName() + ": out of range");
        }
        BigDecimal exact = number instanceof BigDecimal ? (BigDecimal) number
                : number instanceof BigInteger ? new BigDecimal((BigInteger) number)
                : number instanceof Double ? null : BigDecimal.valueOf(number.longValue());
        if (raw == double.class || raw == Double.class) {
            return number.doubleValue();
        }
        if (raw == float.class || raw == Float.class) {
            return number.floatValue();
        }
        if (raw == Number.class) {
            return number;
        }
        if (raw == BigDecimal.class) {
            return exact != null ? exact : new BigDecimal(number.toString());
        }
        BigInteger integer;
        try {
            integer = (exact != null ? exact : new BigDecimal(number.toString())).toBigIntegerExact();
        } catch (ArithmeticException fraction) {
            throw new IllegalArgumentException(
                    "cannot map " + number + " at " + path + " to " + raw.getName() + ": not an integer");
        }
        if (raw == BigInteger.class) {
            return integer;
        }
        long bits = raw == long.class || raw == Long.class ? 64
                : raw == int.class || raw == Integer.class ? 32
                : raw == short.class || raw == Short.class ? 16
                : raw == byte.class || raw == Byte.class ? 8 : 0;
        if (bits == 0) {
            throw mismatch(path, value, type);
        }
        if (integer.bitLength() >= bits) {
            throw new IllegalArgumentException(
                    "cannot map " + integer + " at " + path + " to " + raw.getName() + ": out of range");
        }
        long v = integer.longValue();
        if (bits == 64) {
            return v;
        }
        if (bits == 32) {
            return (int) v;
        }
        if (bits == 16) {
            return (short) v;
        }
        return (byte) v;
    }

    @SuppressWarnings("unchecked")
    private static Collection<Object> newCollection(Class<?> raw, Type type) {
        if (!raw.isInterface() && !Modifier.isAbstract(raw.getModifiers())) {
            return (Collection<Object>) instantiate(raw, type);
        }
        if (SortedSet.class.isAssignableFrom(raw)) {
            return new TreeSet<>();
        }
        if (Set.class.isAssignableFrom(raw)) {
            return new LinkedHashSet<>();
        }
        return new ArrayList<>();
    }

    @SuppressWarnings("unchecked")
    private static Map<Object, Object> newMap(Class<?> raw, Type type) {
        if (!raw.isInterface() && !Modifier.isAbstract(raw.getModifiers())) {
            return (Map<Object, Object>) instantiate(raw, type);
        }
        if (SortedMap.class.isAssignableFrom(raw)) {
            return new TreeMap<>();
        }
        return new LinkedHashMap<>();
    }

    private static Object instantiate(Class<?> raw, Type type) {
        try {
            Constructor<?> constructor = raw.getDeclaredConstructor();
            constructor.setAccessible(true);
            return constructor.newInstance();
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new IllegalArgumentException("cannot create " + type.getTypeName()
                    + ": it needs a constructor without arguments (" + e + ")", e);
        }
    }

    private static Object bean(Map<?, ?> json, Class<?> raw, String path, int depth) {
        if (raw.isInterface() || Modifier.isAbstract(raw.getModifiers())) {
            throw new IllegalArgumentException(
                    "cannot map an object at " + path + " to " + raw.getName() + ": it is abstract");
        }
        Object bean = instantiate(raw, raw);
        for (Map.Entry<?, ?> entry : json.entrySet()) {
            String key = (String) entry.getKey();
            String at = path + "." + key;
            Method setter = setter(raw, key);
            try {
                if (setter != null) {
                    setter.setAccessible(true);
                    setter.invoke(bean, convert(entry.getValue(), setter.getGenericParameterTypes()[0], raw, at,
                            depth + 1));
                    continue;
                }
                Field field = field(raw, key);
                if (field != null) {
                    field.setAccessible(true);
                    field.set(bean, convert(entry.getValue(), field.getGenericType(), raw, at, depth + 1));
                }
            } catch (java.lang.reflect.InvocationTargetException e) {
                throw new IllegalArgumentException("the setter of " + at + " threw " + e.getCause(), e.getCause());
            } catch (IllegalArgumentException e) {
                throw e;
            } catch (IllegalAccessException | RuntimeException e) {
                throw new IllegalArgumentException("cannot set " + at + " on " + raw.getName() + ": " + e, e);
            }
        }
        return bean;
    }

    private static Method setter(Class<?> raw, String key) {
        if (key.isEmpty()) {
            return null;
        }
        String name = "set" + Character.toUpperCase(key.charAt(0)) + key.substring(1);
        for (Class<?> c = raw; c != null && c != Object.class; c = c.getSuperclass()) {
            for (Method method : c.getDeclaredMethods()) {
                if (method.getName().equals(name) && method.getParameterCount() == 1
                        && !Modifier.isStatic(method.getModifiers()) && !method.isBridge()) {
                    return method;
                }
            }
        }
        return null;
    }

    private static Field field(Class<?> raw, String key) {
        for (Class<?> c = raw; c != null && c != Object.class; c = c.getSuperclass()) {
            for (Field field : c.getDeclaredFields()) {
                int modifiers = field.getModifiers();
                if (field.getName().equals(key) && !Modifier.isStatic(modifiers) && !Modifier.isFinal(modifiers)) {
                    return field;
                }
            }
        }
        return null;
    }

    private static Type typeArgument(Type type, int index) {
        if (type instanceof ParameterizedType) {
            Type[] arguments = ((ParameterizedType) type).getActualTypeArguments();
            if (index < arguments.length) {
                return arguments[index];
            }
        }
        return index == 0 && type instanceof Class && Map.class.isAssignableFrom((Class<?>) type) ? String.class
                : Object.class;
    }

    static Class<?> rawClass(Type type) {
        if (type instanceof Class) {
            return (Class<?>) type;
        }
        if (type instanceof ParameterizedType) {
            return rawClass(((ParameterizedType) type).getRawType());
        }
        if (type instanceof GenericArrayType) {
            return Array.newInstance(rawClass(((GenericArrayType) type).getGenericComponentType()), 0).getClass();
        }
        if (type instanceof WildcardType) {
            Type[] upper = ((WildcardType) type).getUpperBounds();
            return upper.length > 0 ? rawClass(upper[0]) : Object.class;
        }
        if (type instanceof TypeVariable) {
            Type[] bounds = ((TypeVariable<?>) type).getBounds();
            return bounds.length > 0 ? rawClass(bounds[0]) : Object.class;
        }
        return Object.class;
    }

    /**
     * What a type variable stands for in {@code owner}: follows the owner's superclasses and interfaces, with
     * their type arguments, up to the declaration of the variable; its bound when nothing says.
     */
    static Type resolve(TypeVariable<?> variable, Class<?> owner) {
        Map<TypeVariable<?>, Type> bindings = new HashMap<>();
        collect(owner, bindings, 0);
        Type resolved = variable;
        for (int guard = 0; guard < 64 && resolved instanceof TypeVariable; guard++) {
            Type next = bindings.get(resolved);
            if (next == null) {
                break;
            }
            resolved = next;
        }
        if (resolved instanceof TypeVariable) {
            Type[] bounds = ((TypeVariable<?>) resolved).getBounds();
            return bounds.length > 0 ? bounds[0] : Object.class;
        }
        return resolved;
    }

    private static void collect(Type type, Map<TypeVariable<?>, Type> bindings, int depth) {
        if (type == null || depth > 64) {
            return;
        }
        Class<?> raw = rawClass(type);
        if (type instanceof ParameterizedType) {
            TypeVariable<?>[] variables = raw.getTypeParameters();
            Type[] arguments = ((ParameterizedType) type).getActualTypeArguments();
            for (int i = 0; i < variables.length && i < arguments.length; i++) {
                bindings.putIfAbsent(variables[i], arguments[i]);
            }
        }
        collect(raw.getGenericSuperclass(), bindings, depth + 1);
        for (Type parent : raw.getGenericInterfaces()) {
            collect(parent, bindings, depth + 1);
        }
    }

    // ---------------------------------------------------------------- writing

    /** Writes a value as JSON text. */
    static String write(Object value) {
        StringBuilder out = new StringBuilder();
        write(value, out, 0, new IdentityHashMap<>());
        return out.toString();
    }

    private static void write(Object value, StringBuilder out, int depth, IdentityHashMap<Object, Boolean> open) {
        if (depth > MAX_DEPTH) {
            throw new IllegalArgumentException("the result is nested deeper than " + MAX_DEPTH + " levels");
        }
        if (value == null) {
            out.append("null");
            return;
        }
        if (value instanceof String || value instanceof Character || value instanceof CharSequence) {
            string(value.toString(), out);
            return;
        }
        if (value instanceof Boolean) {
            out.append(value);
            return;
        }
        if (value instanceof Number) {
            if ((value instanceof Double && (((Double) value).isNaN() || ((Double) value).isInfinite()))
                    || (value instanceof Float && (((Float) value).isNaN() || ((Float) value).isInfinite()))) {
                string(value.toString(), out);
            } else {
                out.append(value);
            }
            return;
        }
        if (value instanceof Enum) {
            string(((Enum<?>) value).name(), out);
            return;
        }
        if (value instanceof byte[]) {
            string(Base64.getEncoder().encodeToString((byte[]) value), out);
            return;
        }
        if (value instanceof Optional) {
            write(((Optional<?>) value).orElse(null), out, depth + 1, open);
            return;
        }
        if (value instanceof Date) {
            out.append(((Date) value).getTime());
            return;
        }
        if (open.put(value, Boolean.TRUE) != null) {
            throw new IllegalArgumentException(
                    "the result refers to itself (a " + value.getClass().getName() + " contains itself)");
        }
        try {
            if (value instanceof Map) {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                    if (!first) {
                        out.append(',');
                    }
                    first = false;
                    Object key = entry.getKey();
                    string(key instanceof Enum ? ((Enum<?>) key).name() : String.valueOf(key), out);
                    out.append(':');
                    write(entry.getValue(), out, depth + 1, open);
                }
                out.append('}');
            } else if (value instanceof Iterable) {
                out.append('[');
                Iterator<?> items = ((Iterable<?>) value).iterator();
                boolean first = true;
                while (items.hasNext()) {
                    if (!first) {
                        out.append(',');
                    }
                    first = false;
                    write(items.next(), out, depth + 1, open);
                }
                out.append(']');
            } else if (value.getClass().isArray()) {
                out.append('[');
                int length = Array.getLength(value);
                for (int i = 0; i < length; i++) {
                    if (i > 0) {
                        out.append(',');
                    }
                    write(Array.get(value, i), out, depth + 1, open);
                }
                out.append(']');
            } else if (jdkClass(value.getClass())) {
                string(value.toString(), out);
            } else {
                writeBean(value, out, depth, open);
            }
        } finally {
            open.remove(value);
        }
    }

    private static boolean jdkClass(Class<?> c) {
        String name = c.getName();
        return name.startsWith("java.") || name.startsWith("javax.") || name.startsWith("jdk.")
                || name.startsWith("sun.") || name.startsWith("com.sun.");
    }

    private static void writeBean(Object bean, StringBuilder out, int depth, IdentityHashMap<Object, Boolean> open) {
        Class<?> raw = bean.getClass();
        Map<String, Method> getters = new LinkedHashMap<>();
        for (Method method : raw.getMethods()) {
            if (Modifier.isStatic(method.getModifiers()) || method.getParameterCount() != 0
                    || method.getDeclaringClass() == Object.class || method.isBridge()) {
                continue;
            }
            String name = method.getName();
            String property = null;
            if (name.startsWith("get") && name.length() > 3 && method.getReturnType() != void.class) {
                property = name.substring(3);
            } else if (name.startsWith("is") && name.length() > 2
                    && (method.getReturnType() == boolean.class || method.getReturnType() == Boolean.class)) {
                property = name.substring(2);
            }
            if (property != null) {
                getters.putIfAbsent(decapitalize(property), method);
            }
        }
        // Fields in declaration order (superclasses first), then properties that only have a getter.
        List<Class<?>> chain = new ArrayList<>();
        for (Class<?> c = raw; c != null && c != Object.class; c = c.getSuperclass()) {
            chain.add(0, c);
        }
        Map<String, Field> fields = new LinkedHashMap<>();
        for (Class<?> c : chain) {
            for (Field field : c.getDeclaredFields()) {
                int modifiers = field.getModifiers();
                if (!Modifier.isStatic(modifiers) && !Modifier.isTransient(modifiers) && !field.isSynthetic()) {
                    fields.putIfAbsent(field.getName(), field);
                }
            }
        }
        List<String> names = new ArrayList<>(fields.keySet());
        for (String name : getters.keySet()) {
            if (!fields.containsKey(name)) {
                names.add(name);
            }
        }
        out.append('{');
        boolean first = true;
        for (String name : names) {
            Object value;
            try {
                Method getter = getters.get(name);
                if (getter != null) {
                    getter.setAccessible(true);
                    value = getter.invoke(bean);
                } else {
                    Field field = fields.get(name);
                    field.setAccessible(true);
                    value = field.get(bean);
                }
            } catch (java.lang.reflect.InvocationTargetException e) {
                throw new IllegalArgumentException(
                        "the getter of " + name + " of " + raw.getName() + " threw " + e.getCause(), e.getCause());
            } catch (IllegalAccessException | RuntimeException e) {
                // A member of a class this runtime may not open: left out.
                continue;
            }
            if (!first) {
                out.append(',');
            }
            first = false;
            string(name, out);
            out.append(':');
            write(value, out, depth + 1, open);
        }
        out.append('}');
    }

    /** {@code URL} stays {@code URL}, {@code FirstName} becomes {@code firstName} (the JavaBeans rule). */
    private static String decapitalize(String name) {
        if (name.length() > 1 && Character.isUpperCase(name.charAt(0)) && Character.isUpperCase(name.charAt(1))) {
            return name;
        }
        return Character.toLowerCase(name.charAt(0)) + name.substring(1);
    }

    static void string(String text, StringBuilder out) {
        out.append('"');
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            switch (c) {
                case '"':
                    out.append("\\\"");
                    break;
                case '\\':
                    out.append("\\\\");
                    break;
                case '\n':
                    out.append("\\n");
                    break;
                case '\r':
                    out.append("\\r");
                    break;
                case '\t':
                    out.append("\\t");
                    break;
                case '\b':
                    out.append("\\b");
                    break;
                case '\f':
                    out.append("\\f");
                    break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }
}
