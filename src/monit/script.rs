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
    let mut known = |v: Option<String>, what: &str, slot: &mut Option<String>| {
        if let Some(v) = v {
            if v.contains('$') || v.contains('`') {
                f.unresolved.push(format!("{what} {v}"));
            } else {
                *slot = Some(v);
            }
        }
    };
    let mut slots = Failover::default();
    for l in &lines {
        if l.iter()
            .any(|w| w == "associate-elastic-ip" || w == "associate-address")
        {
            known(flag(l, "--elastic-ip"), "--elastic-ip", &mut slots.eip);
            known(flag(l, "--public-ip"), "--public-ip", &mut slots.eip);
            known(
                flag(l, "--allocation-id"),
                "--allocation-id",
                &mut slots.allocation_id,
            );
            known(
                flag(l, "--private-ip-address"),
                "--private-ip-address",
                &mut slots.private_ip,
            );
            if provider == "opsworks" {
                known(
                    flag(l, "--instance-id"),
                    "--instance-id",
                    &mut slots.opsworks_instance_id,
                );
            }
            known(flag(l, "--region"), "--region", &mut slots.region);
        }
        if l.iter().any(|w| w == "publish") && l.iter().any(|w| w == "sns") {
            known(flag(l, "--topic-arn"), "--topic-arn", &mut slots.topic_arn);
            known(flag(l, "--region"), "--region", &mut slots.sns_region);
        }
        if slots.checkip_url.is_none()
            && l.iter().any(|w| w.ends_with("curl") || w.ends_with("wget"))
        {
            if let Some(u) = l
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            {
                known(Some(u.clone()), "checkip URL", &mut slots.checkip_url);
            }
        }
    }
    Some(Failover {
        provider,
        unresolved: f.unresolved,
        ..slots
    })
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
