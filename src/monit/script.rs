//! Recognize a failover script of the `failtome.sh` kind: checkip, then
//! `aws opsworks associate-elastic-ip` or `aws ec2 associate-address`, then `aws sns publish`.
//! Such a script becomes a `claim_eip` action (which does all three, with more care); any
//! other script stays an `exec` action.

/// What a failover script does, as far as its literal arguments tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failover {
    /// "ec2" or "opsworks".
    pub provider: &'static str,
    pub eip: Option<String>,
    pub allocation_id: Option<String>,
    pub private_ip: Option<String>,
    pub opsworks_instance_id: Option<String>,
    /// `--region` of the associate call.
    pub region: Option<String>,
    /// `--region` of the SNS call.
    pub sns_region: Option<String>,
    pub topic_arn: Option<String>,
    pub checkip_url: Option<String>,
    /// Arguments that were shell expressions, so their value is unknown here.
    pub unresolved: Vec<String>,
}

/// Shell words of one logical line (continuations joined), quotes removed. Good enough for
/// the argument lists of `aws` calls; anything with `$` is kept as written.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '#') if cur.is_empty() => break,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `--flag VALUE` or `--flag=VALUE`.
fn flag(words: &[String], name: &str) -> Option<String> {
    words.iter().enumerate().find_map(|(i, w)| {
        if w == name {
            words.get(i + 1).cloned()
        } else {
            w.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_owned)
        }
    })
}

/// `v`, unless it is a shell expression: then its value is unknown here, and it is noted.
fn literal(v: Option<String>, what: &str, unresolved: &mut Vec<String>) -> Option<String> {
    let v = v?;
    if v.contains('$') || v.contains('`') {
        unresolved.push(format!("{what} {v}"));
        None
    } else {
        Some(v)
    }
}

pub fn recognize(text: &str) -> Option<Failover> {
    let joined = text.replace("\\\n", " ");
    let lines: Vec<Vec<String>> = joined.lines().map(words).collect();
    let has = |w: &str| lines.iter().any(|l| l.iter().any(|x| x == w));
    let provider = if has("associate-elastic-ip") {
        "opsworks"
    } else if has("associate-address") {
        "ec2"
    } else {
        return None;
    };
    let mut f = Failover {
        provider,
        ..Default::default()
    };
    let u = &mut f.unresolved;
    for l in &lines {
        // A later line's literal never replaces an earlier one.
        let set = |slot: &mut Option<String>, name: &str, u: &mut Vec<String>| {
            if let Some(v) = literal(flag(l, name), name, u) {
                slot.get_or_insert(v);
            }
        };
        if l.iter()
            .any(|w| w == "associate-elastic-ip" || w == "associate-address")
        {
            set(&mut f.eip, "--elastic-ip", u);
            set(&mut f.eip, "--public-ip", u);
            set(&mut f.allocation_id, "--allocation-id", u);
            set(&mut f.private_ip, "--private-ip-address", u);
            if provider == "opsworks" {
                set(&mut f.opsworks_instance_id, "--instance-id", u);
            }
            set(&mut f.region, "--region", u);
        }
        if l.iter().any(|w| w == "publish") && l.iter().any(|w| w == "sns") {
            set(&mut f.topic_arn, "--topic-arn", u);
            set(&mut f.sns_region, "--region", u);
        }
        if f.checkip_url.is_none() && l.iter().any(|w| w.ends_with("curl") || w.ends_with("wget")) {
            let url = l
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"));
            f.checkip_url = literal(url.cloned(), "checkip URL", u);
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opsworks_failtome_script() {
        let script = r#"#!/bin/sh

# Check current instance IP externally
OUT=$( curl -qSfsw '\n' http://checkip.amazonaws.com ) 2>/dev/null
RET=$?

# Check that current IP isn't target IP and that request didn't fail
if [ "$RET" = '0' -a "$OUT" != '54.173.141.243' ]; then

 # Swap EIP
 aws --region us-west-2 opsworks associate-elastic-ip \
  --elastic-ip 54.173.141.243 \
  --instance-id 4d6d1710-ded9-42a1-b08e-b043ad7af1e2

 # Send notification
 aws --region us-west-2 sns publish \
  --topic-arn arn:aws:sns:us-west-2:123456789012:haproxy-failover \
  --subject "HAProxy failover notification" \
  --message \
  "Instance 4d6d1710-ded9-42a1-b08e-b043ad7af1e2 took over 54.173.141.243"

fi
"#;
        let f = recognize(script).unwrap();
        assert_eq!(f.provider, "opsworks");
        assert_eq!(f.eip.as_deref(), Some("54.173.141.243"));
        assert_eq!(
            f.opsworks_instance_id.as_deref(),
            Some("4d6d1710-ded9-42a1-b08e-b043ad7af1e2")
        );
        assert_eq!(f.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            f.topic_arn.as_deref(),
            Some("arn:aws:sns:us-west-2:123456789012:haproxy-failover")
        );
        assert_eq!(
            f.checkip_url.as_deref(),
            Some("http://checkip.amazonaws.com")
        );
        assert!(f.unresolved.is_empty());
    }

    #[test]
    fn an_ec2_script_with_shell_variables_and_an_ordinary_script() {
        let f = recognize(
            "EIP=eipalloc-1\naws ec2 associate-address --allocation-id $EIP --network-interface-id eni-1 --private-ip-address=10.0.0.6 --allow-reassociation\n",
        )
        .unwrap();
        assert_eq!(f.provider, "ec2");
        assert_eq!(f.allocation_id, None);
        assert_eq!(f.private_ip.as_deref(), Some("10.0.0.6"));
        assert_eq!(f.unresolved, ["--allocation-id $EIP"]);
        assert_eq!(recognize("#!/bin/sh\nsystemctl restart haproxy\n"), None);
    }
}
