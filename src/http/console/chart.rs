//! The overview's chart of partner calls over the last hour, as inline SVG drawn here: one
//! bar per minute (calls), its failed part on top of it in red. No script, no style attribute
//! (the Content-Security-Policy allows neither): the colours come from the console's CSS.

use maud::{html, Markup};

use crate::bridge::operator::MinuteCalls;

const BAR_W: u32 = 4;
const HEIGHT: u32 = 40;

/// The chart of `minutes` (oldest first).
pub fn calls_chart(minutes: &[MinuteCalls]) -> Markup {
    let max = minutes.iter().map(|m| m.calls).max().unwrap_or(0).max(1);
    let total: u32 = minutes.iter().map(|m| m.calls).sum();
    let errors: u32 = minutes.iter().map(|m| m.errors).sum();
    let width = BAR_W * u32::try_from(minutes.len()).unwrap_or(60);
    let h = |n: u32| (u64::from(n) * u64::from(HEIGHT)).div_ceil(u64::from(max));
    html! {
        svg class="chart" width=(width) height=(HEIGHT) viewBox={"0 0 " (width) " " (HEIGHT)}
            role="img" xmlns="http://www.w3.org/2000/svg" {
            title { (total) " partner calls, " (errors) " failed, in the last hour" }
            @for (i, m) in minutes.iter().enumerate() {
                @let x = u32::try_from(i).unwrap_or(0) * BAR_W;
                @if m.calls > 0 {
                    rect class="calls" x=(x) y=(u64::from(HEIGHT) - h(m.calls))
                        width=(BAR_W - 1) height=(h(m.calls)) {}
                }
                @if m.errors > 0 {
                    rect class="errors" x=(x) y=(u64::from(HEIGHT) - h(m.errors))
                        width=(BAR_W - 1) height=(h(m.errors)) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_minute_and_errors_are_drawn_apart() {
        let mut minutes = vec![MinuteCalls::default(); 60];
        minutes[58] = MinuteCalls {
            calls: 10,
            errors: 0,
        };
        minutes[59] = MinuteCalls {
            calls: 5,
            errors: 5,
        };
        let svg = calls_chart(&minutes).into_string();
        assert!(svg.contains("15 partner calls, 5 failed"));
        assert!(
            svg.contains(r#"class="calls" x="232" y="0" width="3" height="40""#),
            "{svg}"
        );
        assert!(svg.contains(r#"class="errors" x="236" y="20" width="3" height="20""#));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(!svg.contains("style"));
    }
}
