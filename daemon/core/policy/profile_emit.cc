// SPDX-License-Identifier: Apache-2.0
// Profile -> YAML, generically over the descriptors like the loader, in the spelling the
// loader reads back (enum values without prefix, port ranges as 443 / "8000-8100").
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <yaml-cpp/yaml.h>

#include "core/policy/profile.h"

namespace agentcage::core {
namespace {

namespace pb = google::protobuf;

std::string upper_snake(std::string_view camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    if (i > 0 && std::isupper(static_cast<unsigned char>(camel[i]))) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(camel[i])));
  }
  return out;
}

bool is_port_range(const pb::Descriptor* d) { return d == v1::Profile::PortRange::descriptor(); }

void emit_message(YAML::Emitter& out, const pb::Message& m);

void emit_string(YAML::Emitter& out, const std::string& s) {
  // Our loader reads any scalar into a string field, but other YAML tools would turn
  // `65534` into a number or `yes` into a boolean: quote whatever looks like one.
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> special = {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"};
  bool quote = special.count(lower) ||
               std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) || c == '.' || c == '-' || c == '+'; });
  out << (quote ? YAML::DoubleQuoted : YAML::Auto) << s;
}

// A map<string, string> as a YAML mapping, in key order (protobuf maps have none).
void emit_map(YAML::Emitter& out, const pb::Message& m, const pb::FieldDescriptor* fd) {
  const pb::Reflection* r = m.GetReflection();
  const pb::Descriptor* entry = fd->message_type();
  std::map<std::string, std::string> sorted;
  for (int i = 0; i < r->FieldSize(m, fd); ++i) {
    const pb::Message& e = r->GetRepeatedMessage(m, fd, i);
    sorted[e.GetReflection()->GetString(e, entry->map_key())] = e.GetReflection()->GetString(e, entry->map_value());
  }
  out << YAML::BeginMap;
  for (const auto& [k, v] : sorted) {
    out << YAML::Key << k << YAML::Value;
    emit_string(out, v);
  }
  out << YAML::EndMap;
}

void emit_value(YAML::Emitter& out, const pb::Message& m, const pb::FieldDescriptor* fd, int i) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = i >= 0;
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      emit_string(out, rep ? r->GetRepeatedString(m, fd, i) : r->GetString(m, fd));
      return;
    case pb::FieldDescriptor::CPPTYPE_BOOL: out << (rep ? r->GetRepeatedBool(m, fd, i) : r->GetBool(m, fd)); return;
    case pb::FieldDescriptor::CPPTYPE_UINT32: out << (rep ? r->GetRepeatedUInt32(m, fd, i) : r->GetUInt32(m, fd)); return;
    case pb::FieldDescriptor::CPPTYPE_UINT64: out << (rep ? r->GetRepeatedUInt64(m, fd, i) : r->GetUInt64(m, fd)); return;
    case pb::FieldDescriptor::CPPTYPE_INT32: out << (rep ? r->GetRepeatedInt32(m, fd, i) : r->GetInt32(m, fd)); return;
    case pb::FieldDescriptor::CPPTYPE_INT64: out << (rep ? r->GetRepeatedInt64(m, fd, i) : r->GetInt64(m, fd)); return;
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      out << enum_yaml_name(rep ? r->GetRepeatedEnum(m, fd, i) : r->GetEnum(m, fd));
      return;
    case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
      const pb::Message& sub = rep ? r->GetRepeatedMessage(m, fd, i) : r->GetMessage(m, fd);
      if (const auto* pr = dynamic_cast<const v1::Profile::PortRange*>(&sub)) {
        if (pr->lo() == pr->hi())
          out << pr->lo();
        else
          out << YAML::DoubleQuoted << fmt::format("{}-{}", pr->lo(), pr->hi());
        return;
      }
      emit_message(out, sub);
      return;
    }
    default: out << YAML::Null; return;
  }
}

void emit_message(YAML::Emitter& out, const pb::Message& m) {
  const pb::Reflection* r = m.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  out << YAML::BeginMap;
  for (const auto* fd : fields) {
    out << YAML::Key << fd->name() << YAML::Value;
    if (fd->is_map()) {
      emit_map(out, m, fd);
      continue;
    }
    if (!fd->is_repeated()) {
      emit_value(out, m, fd, -1);
      continue;
    }
    // Short scalar lists (ports, namespaces) read best inline; paths and rules one per line.
    bool flow = fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM ||
                (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && is_port_range(fd->message_type()));
    out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
    for (int i = 0; i < r->FieldSize(m, fd); ++i) emit_value(out, m, fd, i);
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
}

}  // namespace

std::string to_yaml(const v1::Profile& profile, const std::vector<std::string>& header) {
  YAML::Emitter out;
  for (const auto& h : header) out << YAML::Comment(h) << YAML::Newline;
  emit_message(out, profile);
  return std::string(out.c_str()) + "\n";
}

std::string enum_yaml_name(const pb::EnumValueDescriptor* v) {
  std::string prefix = upper_snake(v->type()->name()) + "_";
  std::string name = v->name();
  if (name.starts_with(prefix)) name = name.substr(prefix.size());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

}  // namespace agentcage::core
