package cn.mcsd.gateway;

import cn.mcsd.gateway.json.JsonObject;

/**
 * Who a key belongs to, as enrolled: {@code kind} is {@code person}, {@code org} or
 * {@code operator}; the optional fields are {@code null} when absent.
 */
public record Subject(String kind, String name, String orgName, String creditCode, String idNumber) {
    static Subject from(JsonObject o) {
        return new Subject(o.string("kind"), o.string("name"), o.optString("org_name"), o.optString("credit_code"),
                o.optString("id_number"));
    }
}
