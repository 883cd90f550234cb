module HaproxyWatchdog
  # TOML literals for the templates. Every string goes through `str`: an EIP, topic or path
  # with a quote or backslash must not end the string early or change the file's meaning.
  module Toml
    ESCAPES = {
      '"' => '\\"', '\\' => '\\\\',
      "\b" => '\\b', "\t" => '\\t', "\n" => '\\n', "\f" => '\\f', "\r" => '\\r'
    }.freeze

    # A TOML basic string: "..." with \\, \" and control characters escaped.
    def self.str(value)
      s = value.to_s.dup.force_encoding(Encoding::UTF_8)
      raise ArgumentError, "not valid UTF-8: #{value.inspect}" unless s.valid_encoding?
      '"' + s.gsub(/["\\\x00-\x1f\x7f]/) { |c| ESCAPES[c] || format('\\u%04X', c.ord) } + '"'
    end

    def self.int(value)
      Integer(value.to_s, 10).to_s
    end

    def self.str_array(values)
      '[' + Array(values).map { |v| str(v) }.join(', ') + ']'
    end
  end
end
